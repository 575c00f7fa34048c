# Measures the machine's own limits (disk with fdatasync, fsyncs per second, loopback TCP) to set the servers' figures beside.
import os
import socket
import threading
import time

MIB = 1024 * 1024


def disk_write_bandwidth(directory, seconds=2.0, block=MIB):
    """MB/s of sequential 1 MiB appends, each followed by fdatasync: the most a durable log can write."""
    path = os.path.join(directory, "probe-bandwidth")
    data = os.urandom(block)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        written, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.write(fd, data)
            os.fdatasync(fd)
            written += block
        return written / (time.perf_counter() - start) / 1e6
    finally:
        os.close(fd)
        os.unlink(path)


def fsyncs_per_second(directory, seconds=2.0):
    """4 KiB appends each followed by fdatasync, per second: the most sequential durable commits can reach."""
    path = os.path.join(directory, "probe-fsync")
    data = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        syncs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            os.write(fd, data)
            os.fdatasync(fd)
            syncs += 1
        return syncs / (time.perf_counter() - start)
    finally:
        os.close(fd)
        os.unlink(path)


def loopback_bandwidth(seconds=2.0, block=MIB):
    """MB/s through one TCP connection on 127.0.0.1 (send and receive in this process, as a server would)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    sender = socket.create_connection(listener.getsockname())
    receiver, _ = listener.accept()
    listener.close()
    received = [0]

    def receive():
        buffer = bytearray(block)
        while True:
            n = receiver.recv_into(buffer)
            if not n:
                return
            received[0] += n

    thread = threading.Thread(target=receive, daemon=True)
    thread.start()
    data = os.urandom(block)
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        sender.sendall(data)
    sender.close()
    thread.join(10)
    elapsed = time.perf_counter() - start
    receiver.close()
    return received[0] / elapsed / 1e6
