"""A fault-injecting TCP proxy on loopback, for network faults between cluster nodes.

`tc netem` and iptables do not work on this machine, so the fault suite routes inter-broker
traffic through these proxies instead: `FaultProxy(target_port)` listens on a free loopback
port and forwards every accepted connection to 127.0.0.1:target_port. Its mode can change at
any time:

- "pass": bytes are forwarded as they come.
- "delay": every chunk is forwarded `delay_s` seconds after it was read (order kept).
- "blackhole": nothing is forwarded in either direction and nothing is read, so TCP's own
  buffers fill and the senders stall, as across a partitioned network link; new connections
  are accepted but carry nothing. Back to "pass", the stalled bytes flow on intact (TCP would
  have retransmitted them).
- "drop": every open connection is reset and every new one is closed at once (a peer whose
  process is gone, or a firewall answering with RST).

`ProxyGroup` owns many proxies and closes them all. Each connection uses two threads (one per
direction); every blocking call has a timeout so `close()` ends them all promptly.
"""

import select
import socket
import struct
import threading
import time

PASS, DELAY, BLACKHOLE, DROP = "pass", "delay", "blackhole", "drop"
MODES = (PASS, DELAY, BLACKHOLE, DROP)
POLL_S = 0.05
CHUNK = 256 * 1024


def _reset(sock):
    """Close with RST (SO_LINGER 0), as a dropped link looks to the peer."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass


class _Link:
    """One proxied connection: client socket <-> upstream socket."""

    def __init__(self, proxy, client, upstream):
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.closed = threading.Event()
        self.threads = [
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True),
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True),
        ]
        for t in self.threads:
            t.start()

    def _pump(self, src, dst):
        try:
            while not self.closed.is_set():
                mode = self.proxy.mode
                if mode == DROP:
                    break
                if mode == BLACKHOLE:
                    time.sleep(POLL_S)  # read nothing: the sender's buffers fill
                    continue
                r, _, _ = select.select([src], [], [], POLL_S)
                if not r:
                    continue
                data = src.recv(CHUNK)
                if not data:
                    break
                if self.proxy.mode == DELAY:
                    time.sleep(self.proxy.delay_s)
                # A blackhole that began while this chunk was in hand holds it until it ends.
                while self.proxy.mode == BLACKHOLE and not self.closed.is_set():
                    time.sleep(POLL_S)
                if self.proxy.mode == DROP or self.closed.is_set():
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # ValueError: the other direction closed the socket
            pass
        finally:
            self.close(reset=self.proxy.mode == DROP)

    def close(self, reset=False):
        if self.closed.is_set():
            return
        self.closed.set()
        for s in (self.client, self.upstream):
            if reset:
                _reset(s)
            else:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                try:
                    s.close()
                except OSError:
                    pass
        self.proxy._forget(self)


class FaultProxy:
    def __init__(self, target_port, target_host="127.0.0.1", name=None):
        self.target = (target_host, target_port)
        self.name = name or f"proxy->{target_port}"
        self.mode = PASS
        self.delay_s = 0.0
        self.accepted = 0
        self._links = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # A port from free_port(), so a broker port handed out earlier (and not
        # yet bound by its broker) is never taken by the proxy's listener.
        from harness import free_port

        self._listener.bind(("127.0.0.1", free_port()))
        self._listener.listen(128)
        self._listener.settimeout(POLL_S)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def __repr__(self):
        return f"FaultProxy({self.name}, :{self.port} -> :{self.target[1]}, {self.mode})"

    def set_mode(self, mode, delay_s=0.0):
        assert mode in MODES, mode
        self.delay_s = delay_s
        self.mode = mode
        if mode == DROP:
            with self._lock:
                links = list(self._links)
            for link in links:
                link.close(reset=True)

    def open_links(self):
        with self._lock:
            return len(self._links)

    def _forget(self, link):
        with self._lock:
            self._links.discard(link)

    def _accept_loop(self):
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.accepted += 1
            if self.mode == DROP:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                _reset(client)  # the target is down: the client sees the refusal as a reset
                continue
            for s in (client, upstream):
                s.settimeout(None)
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(self, client, upstream)
            with self._lock:
                if self._stop.is_set():
                    link.close()
                    break
                self._links.add(link)

    def close(self):
        self._stop.set()
        try:
            self._listener.close()
        except OSError:
            pass
        self._thread.join(timeout=5.0)
        with self._lock:
            links = list(self._links)
        for link in links:
            link.close()
        for link in links:
            for t in link.threads:
                t.join(timeout=5.0)


class ProxyGroup:
    """Named proxies created together and closed together."""

    def __init__(self):
        self.proxies = {}

    def add(self, key, target_port):
        p = FaultProxy(target_port, name=str(key))
        self.proxies[key] = p
        return p

    def __getitem__(self, key):
        return self.proxies[key]

    def set_mode(self, keys, mode, delay_s=0.0):
        for k in keys:
            self.proxies[k].set_mode(mode, delay_s)

    def close(self):
        for p in self.proxies.values():
            p.close()
