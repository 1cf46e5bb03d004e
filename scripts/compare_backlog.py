"""The backlog (replay) workload of scripts/compare: for each broker, started fresh, one
`tern-bench backlog` run (fill N bytes into a 4-partition topic, read ceiling, page cache
dropped, cold then warm replay from the earliest offset, a steady producer with a tail consumer
beside it), and the summary table for it. When `RDKAFKA_PERFORMANCE` names librdkafka's
`rdkafka_performance` binary, the same backlog is then replayed once more with it (page cache
dropped again, `fetch.wait.max.ms=10`), as a neutral client. The broker start/stop helpers come
from scripts/compare itself."""

import json
import os
import re
import subprocess

# Fill, partitions and consumers of the backlog workload (the setup: 1 KiB records,
# 4 partitions); the steady producer's rate is low enough that any broker keeps it.
PARTITIONS = 4
CONSUMERS = 2
STEADY_RATE = 2000


def run(cmp, brokers, bench, out, fill_bytes, bench_cpus=None):
    """Runs the backlog workload against every broker; returns {broker: result}."""
    results = {}
    for b in brokers:
        port = cmp.free_port()
        logfile = out / f"{b.name}-broker.log"
        with open(logfile, "ab") as f:
            f.write(b"\n==== start for backlog\n")
        try:
            p = b.starter(port, logfile)
            cmp.wait_port(port, p, logfile)
        except Exception as e:  # noqa: BLE001 - report and go on with the other brokers
            cmp.log(f"{b.name}: could not start: {e}")
            continue
        js = out / f"{b.name}-backlog.json"
        cmd = [str(bench), "backlog", "--bootstrap", f"127.0.0.1:{port}", "--label", b.name,
               "--partitions", str(PARTITIONS), "--consumers", str(CONSUMERS),
               "--fill-bytes", str(int(fill_bytes)), "--read-bytes", str(int(fill_bytes)),
               "--drop-caches", "--warm-pass", "--steady-rate", str(STEADY_RATE),
               "--dir", cmp.tmpdir("tern-bench-read-"), "--json", str(js)]
        if bench_cpus:
            cmd += ["--cpus", bench_cpus]
        cmp.log(f"{b.name}: backlog: {' '.join(cmd[2:])}")
        # Fill and replay at no less than ~50 MB/s each, plus the read ceiling and baseline.
        limit = 300 + 3 * fill_bytes / 50e6
        with open(out / f"{b.name}-backlog.log", "w") as lf:
            try:
                subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, timeout=limit)
            except subprocess.TimeoutExpired:
                cmp.log(f"{b.name}: backlog: tern-bench timed out")
        tail = (out / f"{b.name}-backlog.log").read_text().strip().splitlines()[-9:]
        print("    " + "\n    ".join(tail), flush=True)
        if js.exists():
            results[b.name] = json.loads(js.read_text())
            rdk = rdkafka_replay(cmp, port, results[b.name], out / f"{b.name}-rdkafka.log")
            if rdk:
                results[b.name]["rdkafka"] = rdk
        else:
            cmp.log(f"{b.name}: backlog: no result")
        cmp.stop(p)
        for d in list(cmp.TMPDIRS):
            if d.rsplit("/", 1)[-1].startswith(("tern-data-", "kafka-", "redpanda-")):
                cmp.shutil.rmtree(d, ignore_errors=True)
                cmp.TMPDIRS.remove(d)
    return results


# rdkafka_performance's closing line, e.g.
# "% 3193796 messages (3270447104 bytes) consumed in 9876ms: 323389 msgs/s (331.15 MB/s)".
RDKAFKA_SUMMARY = re.compile(
    r"% (\d+) messages \((\d+) bytes\) consumed in (\d+)ms: (\d+) msgs/s \(([\d.]+) MB/s\)")


def rdkafka_replay(cmp, port, res, logpath):
    """Replays the backlog topic with `$RDKAFKA_PERFORMANCE -C` from the beginning (page cache
    dropped first); returns {records_per_sec, mb_per_sec, secs} or None."""
    exe = os.environ.get("RDKAFKA_PERFORMANCE")
    if not exe:
        return None
    topic = res["workload"]["topic_prefix"] + "-0"
    n = res["backlog_records"]
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        cmp.log("rdkafka replay: could not drop the page cache (needs root)")
    cmd = [exe, "-C", "-t", topic, "-o", "beginning", "-c", str(n), "-b", f"127.0.0.1:{port}",
           "-X", "fetch.wait.max.ms=10", "-i", "1000"]
    for p in range(PARTITIONS):
        cmd += ["-p", str(p)]
    cmp.log(f"rdkafka replay: {' '.join(cmd)}")
    with open(logpath, "w") as lf:
        try:
            subprocess.run(cmd, stdout=lf, stderr=subprocess.STDOUT, timeout=120 + n / 20000)
        except subprocess.TimeoutExpired:
            cmp.log("rdkafka replay: timed out")
    found = RDKAFKA_SUMMARY.findall(logpath.read_text())
    if not found:
        cmp.log(f"rdkafka replay: no summary line in {logpath}")
        return None
    msgs, _, ms, rps, mbps = found[-1]
    if int(msgs) < n:
        cmp.log(f"rdkafka replay: consumed {msgs} of {n} records")
        return None
    return {"records_per_sec": float(rps), "mb_per_sec": float(mbps), "secs": int(ms) / 1000}


def summary_md(results):
    """The backlog section of summary.md."""
    if not results:
        return ""
    lines = ["", "## Backlog replay", "",
             f"`tern-bench backlog`: {PARTITIONS} partitions of 1 KiB records filled first, "
             "the disk's sequential read ceiling measured in the same run (O_DIRECT and "
             "buffered from a cold page cache), the page cache dropped, then the whole backlog "
             f"consumed from the earliest offset by {CONSUMERS} consumers (1 MiB per partition "
             "per fetch) — *cold* — and once more right after — *warm*. *% ceiling* is the cold "
             "pass's batch MB/s over the better of the two read ceilings. A producer at "
             f"{STEADY_RATE} records/s on another topic runs throughout: its produce p99 alone "
             "and during the cold replay, and a tail consumer's end-to-end p99 alone and during it. "
             "*librdkafka* is the same cold replay by `rdkafka_performance -C` when "
             "`RDKAFKA_PERFORMANCE` names it.", "",
             "| broker | GB | cold rec/s | cold MB/s | % ceiling | warm MB/s | ceiling O_DIRECT "
             "/ buffered MB/s | steady p99 alone | during replay | ratio | tail e2e p99 ratio "
             "| librdkafka rec/s |",
             "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for b, r in results.items():
        c, w, rc, s = r["cold"], r.get("warm"), r["read_ceiling"], r.get("steady")
        gb = r["backlog_records"] * r["workload"]["record_size"] / 1e9
        warm = f"{w['wire_mb_per_sec']:.0f}" if w else ""
        steady = (f"{s['alone_ms']['p99']:.2f} | {s['during_replay_ms']['p99']:.2f} | "
                  f"x{s['p99_ratio']:.2f}") if s else " | | "
        tail = f"x{s['tail_e2e_p99_ratio']:.2f}" if s and "tail_e2e_p99_ratio" in s else ""
        rdk = f"{r['rdkafka']['records_per_sec']:.0f}" if r.get("rdkafka") else ""
        lines.append(
            f"| {b} | {gb:.1f} | {c['records_per_sec']:.0f} | {c['wire_mb_per_sec']:.0f} | "
            f"{100 * r['share_of_best_ceiling']:.0f}% | {warm} | "
            f"{rc['o_direct_mb_per_sec']:.0f} / {rc['buffered_cold_mb_per_sec']:.0f} | "
            f"{steady} | {tail} | {rdk} |")
        if not r.get("page_cache_dropped"):
            lines[-1] += " (page cache not dropped)"
    return "\n".join(lines) + "\n"
