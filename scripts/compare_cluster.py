"""The cluster workload of scripts/compare: each broker family as a 3-node loopback cluster
(combined broker+controller nodes), an RF3 topic of 16 partitions, tern-bench acks=all with
1 KiB records, first at max rate, then at half the lowest family's max. Tern runs 3 `tern serve`
processes with one shard each (the machine's cores are shared by all three); Apache Kafka
3 KRaft combined nodes formatted with one cluster id; Redpanda 3 nodes with node 1 as the seed.
Tansu has no replication and sits this workload out. The process helpers (start, stop, ports,
temp dirs, tern-bench runs) come from scripts/compare itself.

Only the Tern cluster can be started on the development machine (no Kafka or Redpanda
distribution there): the Kafka and Redpanda starters follow their single-node counterparts in
scripts/compare and those products' documented multi-node settings, untested here."""

import os
import subprocess
import time
import uuid
from pathlib import Path

NODES = 3
PRESET = ["--preset", "1-topic-16-partitions-1kb", "--replication-factor", "3",
          "--acks", "all"]
MAX = "cluster-rf3-max-1kb-acksall"
FIXED = "cluster-rf3-fixed50-1kb-acksall"


class ClusterFamily:
    """name, note, and start(cmp, out) -> (bootstrap port of node 1, [Popen], [client port])."""

    def __init__(self, name, note, starter):
        self.name, self.note, self.starter = name, note, starter


def tern_cluster(exe):
    def starter(cmp, out):
        ports = [(cmp.free_port(), cmp.free_port()) for _ in range(NODES)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        procs = []
        for i, (b, c) in enumerate(ports):
            d = Path(cmp.tmpdir("tern-data-"))
            props = d / "server.properties"
            props.write_text("\n".join([
                f"node.id={i + 1}",
                "process.roles=broker,controller",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}",
                "controller.listener.names=CONTROLLER",
                f"log.dirs={d}/logs",
                "",
            ]))
            procs.append(cmp.start([str(exe), "serve", "--config", str(props), "--shards", "1",
                                    "--metrics-listener", "none"],
                                   out / f"tern-cluster-node{i + 1}.log"))
        return ports[0][0], procs, [b for b, _ in ports]
    return ClusterFamily("tern", f"{NODES} combined nodes, 1 shard each, "
                         "tern.replication.ack.durability=synced (every replica fdatasyncs)",
                         starter)


def kafka_cluster(dist):
    dist = Path(dist)

    def starter(cmp, out):
        ports = [(cmp.free_port(), cmp.free_port()) for _ in range(NODES)]
        voters = ",".join(f"{i + 1}@127.0.0.1:{c}" for i, (_, c) in enumerate(ports))
        cluster_id = uuid.uuid4().hex[:22]
        procs = []
        for i, (b, c) in enumerate(ports):
            d = Path(cmp.tmpdir("kafka-"))
            props = d / "server.properties"
            props.write_text("\n".join([
                "process.roles=broker,controller",
                f"node.id={i + 1}",
                f"controller.quorum.voters={voters}",
                f"listeners=PLAINTEXT://127.0.0.1:{b},CONTROLLER://127.0.0.1:{c}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{b}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={d}/logs",
                "offsets.topic.replication.factor=3",
                "min.insync.replicas=2",
                "group.initial.rebalance.delay.ms=0",
                "",
            ]))
            subprocess.run([str(dist / "bin" / "kafka-storage.sh"), "format", "-t", cluster_id,
                            "-c", str(props)], check=True, stdout=subprocess.DEVNULL)
            env = dict(os.environ, LOG_DIR=f"{d}/applogs",
                       KAFKA_HEAP_OPTS="-Xms1g -Xmx1g")
            procs.append(cmp.start([str(dist / "bin" / "kafka-server-start.sh"), str(props)],
                                   out / f"kafka-cluster-node{i + 1}.log", env))
        return ports[0][0], procs, [b for b, _ in ports]
    return ClusterFamily("kafka", f"{NODES} KRaft combined nodes, page cache (no fsync)", starter)


def redpanda_cluster(exe):
    def starter(cmp, out):
        nodes = [(cmp.free_port(), cmp.free_port(), cmp.free_port()) for _ in range(NODES)]
        seed = nodes[0][1]
        procs = []
        for i, (kafka, rpc, admin) in enumerate(nodes):
            d = Path(cmp.tmpdir("redpanda-"))
            cfg = d / "redpanda.yaml"
            cfg.write_text(f"""redpanda:
  data_directory: {d}/data
  node_id: {i + 1}
  empty_seed_starts_cluster: false
  seed_servers: [{{host: {{address: 127.0.0.1, port: {seed}}}}}]
  rpc_server: {{address: 127.0.0.1, port: {rpc}}}
  advertised_rpc_api: {{address: 127.0.0.1, port: {rpc}}}
  kafka_api: [{{address: 127.0.0.1, port: {kafka}}}]
  advertised_kafka_api: [{{address: 127.0.0.1, port: {kafka}}}]
  admin: [{{address: 127.0.0.1, port: {admin}}}]
  developer_mode: true
""")
            procs.append(cmp.start([str(exe), "--redpanda-cfg", str(cfg), "--smp", "1",
                                    "--memory", "2G", "--overprovisioned"],
                                   out / f"redpanda-cluster-node{i + 1}.log"))
        return nodes[0][0], procs, [k for k, _, _ in nodes]
    return ClusterFamily("redpanda", f"{NODES} nodes, --smp 1 each, developer mode", starter)


def wait_cluster(cmp, bench, port, out, name, timeout=90):
    """Waits until the cluster takes an RF3 topic: a short tern-bench run that creates one."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        js = out / f"{name}-cluster-ready.json"
        r = subprocess.run([str(bench), "run", "--bootstrap", f"127.0.0.1:{port}",
                            "--topic-prefix", f"ready-{uuid.uuid4().hex[:6]}", "--topics", "1",
                            "--partitions", "1", "--replication-factor", "3", "--acks", "all",
                            "--rate", "100", "--duration", "1", "--warmup", "0",
                            "--json", str(js)], capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and js.exists():
            return True
        time.sleep(1)
    return False


def phase(cmp, families, workloads, bench, out, timing, results, bench_cpus=None):
    for f in families:
        procs = []
        try:
            port, procs, ports = f.starter(cmp, out)
            for p, q in zip(procs, ports):
                cmp.wait_port(q, p, out / f"{f.name}-cluster.log")
            if not wait_cluster(cmp, bench, port, out, f.name):
                raise RuntimeError("no RF3 topic could be created within 90 s")
        except Exception as e:  # noqa: BLE001 - report and go on with the other families
            cmp.log(f"{f.name} cluster: could not start: {e}")
            # Nodes of a starter that raised midway are stopped by cmp.cleanup at exit.
            for p in procs:
                cmp.stop(p)
            continue
        for name, kind, args in workloads:
            if any(p.poll() is not None for p in procs):
                cmp.log(f"{f.name} cluster: a node died; see {out}/{f.name}-cluster-node*.log")
                break
            res = cmp.run_bench(bench, port, name, f.name, args, out, timing, None, bench_cpus)
            if res is not None:
                res["kind"] = kind
                results.setdefault(name, {})[f.name] = res
        for p in procs:
            cmp.stop(p)
        cmp.free_data_dirs()


def run(cmp, families, bench, out, timing, results, settle_secs, bench_cpus=None):
    """Max-rate pass over every family, then the fixed-rate pass at half the lowest max."""
    phase(cmp, families, [(MAX, "max", PRESET)], bench, out, timing, results, bench_cpus)
    rates = [r["produce"]["records_per_sec"] for r in results.get(MAX, {}).values()
             if not r.get("error") and r["produce"]["records_per_sec"] > 0]
    if not rates:
        return
    rate = 0.5 * min(rates)
    cmp.log(f"cluster fixed-rate workload at {rate:.0f} records/s")
    cmp.settle(settle_secs)
    phase(cmp, families, [(FIXED, "latency", PRESET + ["--linger-ms", "0", "--rate",
                                                        f"{rate:.0f}"])],
          bench, out, timing, results, bench_cpus)
