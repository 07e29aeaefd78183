/*
 * An LD_PRELOAD shim that makes a process's wall clock run at another rate, or jump.
 *
 * It answers clock_gettime(CLOCK_REALTIME*), gettimeofday and time; other clocks pass through.
 * It uses raw system calls only (no malloc, no dlsym), because libfaketime deadlocks at start-up
 * with Debian's jemalloc-linked redis-server (libfaketime #130, #327, #478).
 *
 * The control file named by REDLOCK_CLOCK_FILE holds three integers: "anchor_ns offset_ns
 * rate_ppm". The fake time is real + offset + (real - anchor) * (rate - 1), so a rate change
 * made with anchor = now and offset = fake(now) - now keeps the clock continuous. The file is
 * read again at most every millisecond of monotonic time.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int64_t anchor_ns, offset_ns, rate_ppm = 1000000;
static int64_t next_read_ns;

static int64_t raw_ns(clockid_t id) {
    struct timespec ts;
    if (syscall(SYS_clock_gettime, id, &ts) != 0) return 0;
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static const char *control_path(char *const *envp) {
    static const char name[] = "REDLOCK_CLOCK_FILE=";
    for (; envp && *envp; envp++) {
        const char *e = *envp;
        size_t i = 0;
        while (name[i] && e[i] == name[i]) i++;
        if (!name[i]) return e + i;
    }
    return 0;
}

extern char **environ;

static const char *parse_int(const char *p, const char *end, int64_t *out) {
    while (p < end && (*p == ' ' || *p == '\n' || *p == '\t')) p++;
    int neg = 0;
    if (p < end && *p == '-') { neg = 1; p++; }
    if (p >= end || *p < '0' || *p > '9') return 0;
    int64_t v = 0;
    while (p < end && *p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    *out = neg ? -v : v;
    return p;
}

static void reload(void) {
    int64_t now = raw_ns(CLOCK_MONOTONIC);
    if (now < __atomic_load_n(&next_read_ns, __ATOMIC_RELAXED)) return;
    __atomic_store_n(&next_read_ns, now + 1000000, __ATOMIC_RELAXED);
    /* Redis rewrites its environment for its process title: keep a copy of the path. */
    static char path[512];
    if (!path[0]) {
        const char *p = control_path(environ);
        if (!p) return;
        size_t i = 0;
        while (p[i] && i + 1 < sizeof path) { path[i] = p[i]; i++; }
        path[i] = 0;
    }
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    char buf[128];
    long n = syscall(SYS_read, fd, buf, sizeof buf);
    syscall(SYS_close, fd);
    if (n <= 0) return;
    const char *p = buf, *end = buf + n;
    int64_t a, o, r;
    if (!(p = parse_int(p, end, &a)) || !(p = parse_int(p, end, &o)) || !parse_int(p, end, &r))
        return;
    __atomic_store_n(&anchor_ns, a, __ATOMIC_RELAXED);
    __atomic_store_n(&offset_ns, o, __ATOMIC_RELAXED);
    __atomic_store_n(&rate_ppm, r, __ATOMIC_RELAXED);
}

static int64_t fake_realtime_ns(void) {
    reload();
    int64_t real = raw_ns(CLOCK_REALTIME);
    int64_t a = __atomic_load_n(&anchor_ns, __ATOMIC_RELAXED);
    int64_t o = __atomic_load_n(&offset_ns, __ATOMIC_RELAXED);
    int64_t r = __atomic_load_n(&rate_ppm, __ATOMIC_RELAXED);
    __int128 skew = (__int128)(real - a) * (r - 1000000) / 1000000;
    return real + o + (int64_t)skew;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE) {
        int64_t t = fake_realtime_ns();
        ts->tv_sec = t / 1000000000;
        ts->tv_nsec = t % 1000000000;
        return 0;
    }
    return (int)syscall(SYS_clock_gettime, id, ts);
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
    (void)tz;
    int64_t t = fake_realtime_ns();
    tv->tv_sec = t / 1000000000;
    tv->tv_usec = (t % 1000000000) / 1000;
    return 0;
}

time_t time(time_t *out) {
    time_t t = (time_t)(fake_realtime_ns() / 1000000000);
    if (out) *out = t;
    return t;
}
