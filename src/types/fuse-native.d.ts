// Minimal typings for fuse-native 2.2.6 (the package ships none). Note the real fsync argument
// order is (path, datasync, fd, cb), not the README's.
declare module 'fuse-native' {
  interface FuseOptions {
    force?: boolean;
    mkdir?: boolean;
    autoUnmount?: boolean;
    allowOther?: boolean;
    fsname?: string;
    timeout?: number | false;
    debug?: boolean;
  }
  class Fuse {
    constructor(mnt: string, ops: Record<string, (...args: any[]) => void>, opts?: FuseOptions);
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    static unmount(mnt: string, cb: (err: Error | null) => void): void;
    static EPERM: number;
    static ENOENT: number;
    static EIO: number;
    static EOPNOTSUPP: number;
    static ENOSYS: number;
    [errno: string]: any;
  }
  export = Fuse;
}
