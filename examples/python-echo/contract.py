#!/usr/bin/env python3
# An echo contract with no SDK at all, to show the contract interface is plain POSIX: the args
# JSON arrives on stdin; each user's inputs are byte ranges of the file open at user_in_fd; each
# output is written to the user's fd as a 4-byte big-endian length followed by the bytes.
import json, os, struct, sys

args = json.loads(sys.stdin.read())
for pubkey, spec in args["users"].items():
    out_fd, spans = spec[0], spec[1:]
    for offset, length in spans:
        data = os.pread(args["user_in_fd"], length, offset)
        reply = b"python echo: " + data
        os.write(out_fd, struct.pack(">I", len(reply)) + reply)
if not args["readonly"]:
    with open("runs.txt", "a") as f:
        f.write("%d\n" % args["lcl_seq_no"])
