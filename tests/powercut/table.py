#!/usr/bin/env python3
"""The power-cut harness's table and verdicts, from run.sh's results.txt.

    table.py RESULTS OLD_SECONDS [TABLE_MD]

Prints a markdown table (one row per target: dekfs, ext4, gocryptfs) and
one verdict line per assertion ("ok ..." or "FAILED ..."), which run.sh
counts. Only dekfs is asserted; plain ext4 is checked for the committed
files too, since a loss there means the harness itself is wrong.
It must not decide anything run.sh did not measure.
"""
import statistics
import sys


def med_max(vals):
    if not vals:
        return "-"
    return "%g / %d" % (statistics.median(vals), max(vals))


def main():
    rows = {}
    for ln in open(sys.argv[1]):
        parts = ln.split()
        if len(parts) < 3 or "=" not in parts[2] or not parts[2].startswith("mounted="):
            continue
        kv = dict(p.split("=", 1) for p in parts[2:])
        rows.setdefault(parts[0], []).append({k: int(v) for k, v in kv.items()})
    old = sys.argv[2]
    head = ("| target | cuts | unmountable | e2fsck not clean | fsync-committed lost / checks "
            "| committed wrong | dirs unreadable (median / max) | dirs older than %ss unreadable "
            "| files with an EIO block (median / max) | wrong 16-byte records |" % old)
    out = [head, "|" + "---|" * 10]
    verdicts = []
    for t in ["dekfs", "ext4", "gocryptfs"] + sorted(set(rows) - {"dekfs", "ext4", "gocryptfs"}):
        rs = rows.get(t)
        if not rs:
            continue
        m = [r for r in rs if r.get("mounted") == 1 and "committed" in r]
        s = lambda k: sum(r.get(k, 0) for r in m)
        unmountable = len(rs) - len(m)
        out.append("| %s | %d | %d | %d | %d / %d | %d | %s | %d | %s | %d |" % (
            t, len(rs), unmountable, sum(1 for r in m if r["fsck_rc"] != 0),
            s("lost"), s("committed"), s("wrong"),
            med_max([r["dirs_bad"] for r in m]), s("dirs_bad_old"),
            med_max([r["eio_files"] for r in m]), s("wrong_records")))
        if t == "dekfs":
            verdicts += [
                (unmountable == 0, "dekfs: every cut mounts and reads back (%d of %d)" % (len(m), len(rs))),
                (s("lost") + s("wrong") == 0, "dekfs: fsync-committed files lost or wrong: %d + %d of %d checks"
                 % (s("lost"), s("wrong"), s("committed"))),
                (s("wrong_records") == 0, "dekfs: wrong bytes: %d records" % s("wrong_records")),
                (s("dirs_bad_old") == 0, "dekfs: directories older than %s s unreadable: %d" % (old, s("dirs_bad_old"))),
            ]
        if t == "ext4":
            verdicts.append((unmountable == 0 and s("lost") + s("wrong") == 0,
                             "ext4 baseline (harness sanity): committed files lost or wrong: %d + %d of %d"
                             % (s("lost"), s("wrong"), s("committed"))))
    table = "\n".join(out)
    print(table)
    if len(sys.argv) > 3:
        with open(sys.argv[3], "w") as f:
            f.write(table + "\n")
    for good, what in verdicts:
        print("%s %s" % ("ok" if good else "FAILED", what))


if __name__ == "__main__":
    main()
