"""Local services for development, tests and the demo: a real Apache Kafka broker and a real Redis.

No Docker engine runs on the machines this project is developed and tested on, so both services
run as plain child processes on loopback:

- **Kafka**: the broker jars are resolved from Maven Central with ``mvn`` (``ops/kafka/pom.xml``,
  pinned version) into an ignored cache, KRaft storage is formatted, and one combined
  broker+controller starts with the transaction log at replication factor 1 and min ISR 1, so that
  transactions (exactly-once) work on a single node.
- **Redis**: Debian's ``redis-server``, installed with apt-get when missing and running as root,
  started with persistence off.

Each service writes a pid file and a log file in its run directory, so ``stop`` works from another
process (the CLI) as well as from the object that started it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
"""Pinned broker version; keep in step with ops/kafka/pom.xml."""

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache"
RUN_DIR = REPO_ROOT / ".run"


class ServiceError(RuntimeError):
    """A local service could not be provisioned or started; the message says why and what to do."""


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    with contextlib.suppress(ChildProcessError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    return True


def stop_pid(pid_file: Path, *, timeout: float = 20.0) -> bool:
    """Stop the process named in ``pid_file``: SIGTERM, then SIGKILL after ``timeout``.

    Returns True when a process was running.
    """
    if not pid_file.exists():
        return False
    try:
        pid = int(pid_file.read_text().strip())
    except ValueError:
        pid_file.unlink(missing_ok=True)
        return False
    if not _pid_alive(pid):
        pid_file.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.1)
    if _pid_alive(pid):
        log.warning("process %d ignored SIGTERM for %.0f s; killing it", pid, timeout)
        os.kill(pid, signal.SIGKILL)
        while _pid_alive(pid):
            time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    return True


# --------------------------------------------------------------------------------------------
# Kafka
# --------------------------------------------------------------------------------------------


def kafka_lib_dir() -> Path:
    """Where the broker jars of the pinned version are cached."""
    return CACHE_DIR / f"kafka-{KAFKA_VERSION}" / "lib"


def provision_kafka() -> Path:
    """Resolve the broker jars with Maven once; later calls find them in the cache.

    :returns: the folder holding the jars.
    :raises ServiceError: when Java or Maven is missing or Maven cannot resolve the jars.
    """
    lib = kafka_lib_dir()
    marker = lib / ".complete"
    if marker.exists():
        return lib
    for tool, hint in (("java", "a Java 17+ runtime"), ("mvn", "Apache Maven")):
        if shutil.which(tool) is None:
            raise ServiceError(f"'{tool}' is not on PATH: install {hint} to run the local broker")
    lib.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    log.info("resolving Apache Kafka %s jars from Maven Central into %s", KAFKA_VERSION, lib)
    result = subprocess.run(
        [
            "mvn",
            "-B",
            "-q",
            "-f",
            str(REPO_ROOT / "ops" / "kafka" / "pom.xml"),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={lib}",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ServiceError(
            "Maven could not resolve the Kafka broker jars:\n"
            + (result.stdout + result.stderr)[-3000:]
        )
    if not any(lib.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise ServiceError(f"Maven finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {lib}")
    marker.write_text(KAFKA_VERSION)
    log.info("Kafka jars resolved in %.1f s", time.monotonic() - started)
    return lib


@dataclass
class LocalKafka:
    """A single-node Apache Kafka (combined KRaft broker and controller) on loopback.

    :param run_dir: folder for the data, config, log and pid files of this broker.
    :param port: client port; a free one when 0.
    :param controller_port: controller port; a free one when 0.
    """

    run_dir: Path
    port: int = 0
    controller_port: int = 0
    heap: str = "512m"
    startup_seconds: float = field(default=0.0, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.controller_port = self.controller_port or free_port()

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "kafka.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "kafka.log"

    def _config(self) -> str:
        data = self.run_dir / "data"
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                f"CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                f"log.dirs={data}",
                # One node: every internal topic at replication factor 1, so that the
                # transaction coordinator (exactly-once) and consumer groups work.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                # The product creates its topics explicitly, as in production.
                "auto.create.topics.enable=false",
                # A restarted worker must rejoin in seconds: no initial rebalance delay, and
                # allow the short session timeouts the test workers use.
                "group.initial.rebalance.delay.ms=0",
                "group.min.session.timeout.ms=1000",
                "num.partitions=1",
                "log.retention.hours=-1",
                "log.segment.bytes=33554432",
                "log.cleaner.dedupe.buffer.size=8388608",
                "",
            ]
        )

    def start(self, *, timeout: float = 90.0) -> LocalKafka:
        """Provision the jars, format storage, start the broker and wait until it answers."""
        if self.pid_file.exists() and _pid_alive(int(self.pid_file.read_text().strip() or 0)):
            raise ServiceError(f"a broker already runs from {self.run_dir} (pid file present)")
        lib = provision_kafka()
        java = shutil.which("java")
        if java is None:
            raise ServiceError("'java' is not on PATH: install a Java 17+ runtime")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = self.run_dir / "server.properties"
        config.write_text(self._config())
        classpath = f"{lib}/*"
        started = time.monotonic()
        if not (self.run_dir / "data" / "meta.properties").exists():
            cluster_id = _kafka_cluster_id()
            fmt = subprocess.run(
                [
                    java,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    # One argument: an id may start with "-", which argparse would read as a flag.
                    f"--cluster-id={cluster_id}",
                    "-c",
                    str(config),
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if fmt.returncode != 0:
                raise ServiceError("formatting KRaft storage failed:\n" + fmt.stderr[-2000:])
        log_handle = self.log_file.open("ab")
        proc = subprocess.Popen(
            [
                java,
                f"-Xmx{self.heap}",
                f"-Xms{self.heap}",
                "-XX:+UseG1GC",
                "-XX:TieredStopAtLevel=1",  # faster start-up; a test broker is not CPU-bound
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={REPO_ROOT / 'ops' / 'kafka' / 'log4j2.yaml'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal must not reach the broker directly
        )
        log_handle.close()
        self._process = proc
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(
                    f"the Kafka broker exited with code {proc.returncode}; last log lines:\n"
                    + _tail(self.log_file)
                )
            if _port_open(self.port) and _broker_ready(self.log_file):
                self.startup_seconds = time.monotonic() - started
                log.info(
                    "Kafka %s ready on %s in %.1f s",
                    KAFKA_VERSION,
                    self.bootstrap_servers,
                    self.startup_seconds,
                )
                return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(
            f"the Kafka broker did not answer within {timeout:.0f} s; last log lines:\n"
            + _tail(self.log_file)
        )

    def stop(self) -> None:
        """Stop the broker by its pid (SIGTERM lets it close its logs cleanly)."""
        stop_pid(self.pid_file, timeout=30.0)
        _reap(self._process)


def _kafka_cluster_id() -> str:
    # A KRaft cluster id is 16 random bytes in URL-safe base64 without padding.
    import base64

    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


def _broker_ready(log_file: Path) -> bool:
    try:
        return "Kafka Server started" in log_file.read_text(errors="replace")
    except FileNotFoundError:
        return False


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log file)"


# --------------------------------------------------------------------------------------------
# Redis
# --------------------------------------------------------------------------------------------


def find_or_install_redis() -> str:
    """Path of ``redis-server``; installs Debian's package when missing and running as root.

    :raises ServiceError: when it is missing and cannot be installed here.
    """
    found = shutil.which("redis-server")
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ServiceError(
            "redis-server is not installed. Install Debian's package: "
            "sudo apt-get install redis-server"
        )
    log.info("installing Debian's redis-server package")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if result.returncode != 0:
            raise ServiceError(f"{' '.join(cmd)} failed:\n{result.stderr[-2000:]}")
    found = shutil.which("redis-server")
    if not found:
        raise ServiceError("apt-get installed redis-server but it is not on PATH")
    return found


@dataclass
class LocalRedis:
    """A Redis server on loopback with persistence off.

    :param run_dir: folder for the log and pid files.
    :param port: TCP port; a free one when 0.
    """

    run_dir: Path
    port: int = 0
    startup_seconds: float = field(default=0.0, init=False)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "redis.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / "redis.log"

    def start(self, *, timeout: float = 20.0) -> LocalRedis:
        """Start redis-server and wait until it accepts connections."""
        server = find_or_install_redis()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        log_handle = self.log_file.open("ab")
        proc = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.run_dir),
                "--protected-mode",
                "yes",
            ],
            stdout=log_handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log_handle.close()
        self._process = proc
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(
                    f"redis-server exited with code {proc.returncode}:\n{_tail(self.log_file)}"
                )
            if _redis_pong(self.port):
                self.startup_seconds = time.monotonic() - started
                log.info("Redis ready on %s in %.2f s", self.url, self.startup_seconds)
                return self
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"redis-server did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        stop_pid(self.pid_file, timeout=10.0)
        _reap(self._process)

    def kill(self) -> None:
        """Kill Redis at once (fault injection): no clean shutdown."""
        if self.pid_file.exists():
            pid = int(self.pid_file.read_text().strip())
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while _pid_alive(pid):
                time.sleep(0.02)
            self.pid_file.unlink(missing_ok=True)
        _reap(self._process)
        self._process = None


def _reap(process: subprocess.Popen[bytes] | None) -> None:
    """Collect a stopped child's exit status, so that no zombie or ResourceWarning is left."""
    if process is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


def _redis_pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
