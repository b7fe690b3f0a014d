# Page-cache write cost on this VM, without the engine: writes TOTAL GiB in 1 MiB pwrites,
# starting writeback every 8 MiB (sync_file_range WRITE), then fdatasync; prints MB/s and the
# process's system CPU. Modes: keep (pages stay cached), drop (pages more than W MiB behind are
# waited for and dropped with posix_fadvise DONTNEED, so the next writes reuse them), dontcache
# (pwritev2 RWF_DONTCACHE, Linux >= 6.14: the kernel drops each page once written back).
# Usage: python3 pagecache-write.py keep|drop|dontcache TOTAL_GIB W_MIB
import os, sys, time, resource, ctypes
mode = sys.argv[1]; total = int(sys.argv[2]) << 30
path = "/tmp/strata-perf-data/exp.dat"
try: os.unlink(path)
except FileNotFoundError: pass
libc = ctypes.CDLL("libc.so.6", use_errno=True)
def sfr(fd, off, n, flags):
    r = libc.sync_file_range(fd, ctypes.c_longlong(off), ctypes.c_longlong(n), flags)
    assert r == 0, ctypes.get_errno()
fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
buf = os.urandom(1 << 20)
CH = 8 << 20; W = int(sys.argv[3]) << 20
t0 = time.time(); r0 = resource.getrusage(resource.RUSAGE_SELF)
off = 0; dropped = 0
while off < total:
    if mode == "dontcache":
        os.pwritev(fd, [buf], off, 0x80)
    else:
        os.pwrite(fd, buf, off)
    off += len(buf)
    if off % CH == 0 and mode != "dontcache":
        sfr(fd, off - CH, CH, 2)  # WRITE
        if mode == "drop" and off - W > dropped:
            sfr(fd, dropped, off - W - dropped, 1 | 2 | 4)
            os.posix_fadvise(fd, dropped, off - W - dropped, os.POSIX_FADV_DONTNEED)
            dropped = off - W
os.fdatasync(fd)
t1 = time.time(); r1 = resource.getrusage(resource.RUSAGE_SELF)
print(mode, total >> 30, "GiB", round(total / (t1 - t0) / 1e6), "MB/s", "sys", round(r1.ru_stime - r0.ru_stime, 2), "user", round(r1.ru_utime - r0.ru_utime, 2))
os.close(fd); os.unlink(path)
