/* execstream-init: PID 1 of every executor container, and its watchdog.
 *
 *   init IDLE_SECONDS MAX_WALL_SECONDS GRACE_SECONDS -- LAUNCHER [ARGS...]
 *
 * Like `tini -g` it starts the launcher in a process group of its own, passes every signal
 * it gets on to that group (once the program has started: one that comes earlier is held
 * until then), reaps whatever is left behind, and exits with the launcher's
 * status (128+N when the launcher died of signal N). On top of that it keeps two deadlines,
 * so that no program outlives its limits even when the server that started it is gone:
 *
 * - idle: IDLE_SECONDS after start, unless a program has begun by then;
 * - run: armed once, when the launcher writes the run's wall time (decimal seconds) to
 *   fd 3, a socket to us, just before the program starts (EXECSTREAM_START_FD=3 tells the
 *   launcher so). The wall time is capped at MAX_WALL_SECONDS, then GRACE_SECONDS are
 *   added; we read one message (answering "held?" with the held signals) and close the
 *   socket, so nothing written later can move it.
 *
 * At a deadline it SIGKILLs every process of the container and exits with 137 (SIGKILL).
 *
 * Usage figures: when the launcher has ended, init stops whatever it left behind, reaps it
 * all, then writes the program's CPU time (user plus system, of every process it reaped,
 * minus what the launcher had used before the program started) and its peak memory (peak
 * resident set, minus the launcher's resident set when the program started, unless the
 * launcher said "exec": it replaced itself with the program) and how many of its processes
 * the kernel killed for want of memory since it started, as a side-channel frame on
 * stderr (sandbox/sidechannel.py), keyed with EXECSTREAM_REPORT_KEY. That key is in our
 * environment only: we wipe it before the launcher starts, and being non-dumpable keeps
 * /proc/1/environ closed. Nothing of the program is alive when the frame is written.
 *
 * Lingering (EXECSTREAM_LINGER_SECONDS, taken out of the environment like the key): once the
 * usage frame is out, init writes an end frame with the same key on stdout, then waits, with
 * nothing else left alive, until the server removes the container (or the linger time
 * passes; then it exits with the launcher's status). The usage frame carries that status
 * too, so the server learns the end from the two frames, the last bytes of each stream,
 * without waiting for the container to exit: in a class burst, the engine's work of tearing
 * down the first containers slowed the start of every later one (bench/results/burst.md);
 * the server removes finished containers at a pace of its own instead.
 *
 * The program runs under the same uid as we do, so it may send us signals, but as the init
 * of its pid namespace we only ever receive the ones we wait for, which we pass back to the
 * program (SIGKILL and SIGSTOP from inside never reach us). Being non-dumpable keeps it from
 * attaching to us with ptrace or opening /proc/1/mem. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define START_FD 3

static char report_key[65];
static double linger = 0; /* seconds to wait after the end frame (0: exit at once) */
static double base_cpu = -1;  /* seconds the launcher had used when the program started */
static long base_rss_kb = 0;  /* its resident set then */
static double used_cpu = 0;   /* seconds of every process reaped */
static long peak_rss_kb = 0;  /* the largest peak resident set among them */
static long long base_oom_kills = 0; /* the cgroup's out-of-memory kills when it started */

/* Signals that came before the program started, passed on once it has (see main). */
#define HELD_MAX 16
static int held[HELD_MAX];
static int held_count = 0;

/* Take the report key out of the environment, and out of memory the program could read;
   the linger time out of the environment (the program has no use for it). */
static void take_report_key(void) {
    char *text = getenv("EXECSTREAM_LINGER_SECONDS");
    if (text != NULL) {
        char *end;
        double value = strtod(text, &end);
        linger = end != text && *end == '\0' && isfinite(value) && value > 0 ? value : 0;
        unsetenv("EXECSTREAM_LINGER_SECONDS");
    }
    char *key = getenv("EXECSTREAM_REPORT_KEY");
    if (key == NULL)
        return;
    snprintf(report_key, sizeof report_key, "%s", key);
    memset(key, 0, strlen(key));
    unsetenv("EXECSTREAM_REPORT_KEY");
}

/* The launcher's CPU seconds and resident set right now, from /proc. */
static void baseline(pid_t launcher, int exec_mode) {
    char path[64], text[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)launcher);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return;
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *after = strrchr(text, ')'); /* the command name may hold spaces */
    unsigned long utime = 0, stime = 0;
    long rss_pages = 0;
    if (after == NULL || sscanf(after + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu "
                                           "%*d %*d %*d %*d %*d %*d %*u %*u %ld",
                                &utime, &stime, &rss_pages) != 3)
        return;
    base_cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
    base_rss_kb = exec_mode ? 0 : rss_pages * (sysconf(_SC_PAGESIZE) / 1024);
}

/* How many processes the kernel's OOM killer has ended in our memory cgroup (v2 or v1), or 0
   when neither file is there (gVisor). The engine learns of such a kill apart from the
   container's exit, and sometimes too late to say so; this count is exact. */
static long long oom_kills(void) {
    static const char *const files[] = {"/sys/fs/cgroup/memory.events",
                                        "/sys/fs/cgroup/memory/memory.oom_control"};
    char line[128];
    long long count = 0;
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        FILE *f = fopen(files[i], "r");
        if (f == NULL)
            continue;
        while (fgets(line, sizeof line, f) != NULL)
            if (sscanf(line, "oom_kill %lld", &count) == 1)
                break;
        fclose(f);
        return count;
    }
    return 0;
}

static void account(const struct rusage *ru) {
    used_cpu += (double)ru->ru_utime.tv_sec + (double)ru->ru_utime.tv_usec / 1e6 +
                (double)ru->ru_stime.tv_sec + (double)ru->ru_stime.tv_usec / 1e6;
    if (ru->ru_maxrss > peak_rss_kb)
        peak_rss_kb = ru->ru_maxrss;
}

/* Run once, while the container waits for its program, what init runs when the program
   starts (parsing the launcher's message, reading the OOM count, formatting the answer):
   under gVisor the first touch of each page of that code traps, and the launcher would wait
   for those traps before its program could run. */
static void warm_up(void) {
    static volatile long sink;
    char text[] = "1.5 base 0.25 1024 held?";
    char *end, reply[32];
    double wall = strtod(text, &end), cpu = 0;
    long rss = 0;
    sscanf(strstr(end, "base"), "base %lf %ld", &cpu, &rss);
    sink = (long)(wall + cpu) + rss + oom_kills() + snprintf(reply, sizeof reply, "held %d\n", 2);
    (void)sink; /* volatile: none of the above is optimised away */
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Write one whole side-channel frame (sandbox/sidechannel.py) to fd; whether it went. */
static int write_frame(int fd, const char *kind, const char *body) {
    char frame[320];
    int total = snprintf(frame, sizeof frame, "\x1e" "execstream:%s:%s:%zu\n%s", report_key,
                         kind, strlen(body), body);
    return total > 0 && total < (int)sizeof frame && write(fd, frame, total) == total;
}

/* Stop and reap everything left, then write the usage frame with the launcher's status
   (when a program started); whether it was written. */
static int report_usage(int status) {
    struct rusage ru;
    kill(-1, SIGKILL);
    while (wait4(-1, NULL, 0, &ru) > 0)
        account(&ru);
    if (report_key[0] == '\0' || base_cpu < 0)
        return 0;
    double cpu = used_cpu - base_cpu;
    long long peak = (long long)(peak_rss_kb - base_rss_kb) * 1024;
    long long killed = oom_kills() - base_oom_kills;
    char body[192];
    snprintf(body, sizeof body,
             "{\"cpu_time\": %.4f, \"memory_peak\": %lld, \"oom_kills\": %lld, \"status\": %d}",
             cpu > 0 ? cpu : 0.0, peak > 0 ? peak : 0LL, killed > 0 ? killed : 0LL, status);
    if (write_frame(STDERR_FILENO, "usage", body))
        return 1;
    perror("init: usage");
    return 0;
}

/* After the report: the end frame on stdout, then wait with nothing alive until the
   container is removed, a SIGTERM (`docker stop`), or the linger time; exit with status. */
static int linger_then_exit(int signals, int status) {
    if (!write_frame(STDOUT_FILENO, "end", ""))
        return status;
    double until = now() + linger;
    for (double left; (left = until - now()) > 0;) {
        struct pollfd fds = {signals, POLLIN, 0};
        if (poll(&fds, 1, (int)ceil(left * 1000)) <= 0)
            continue;
        struct signalfd_siginfo info;
        if (read(signals, &info, sizeof info) == sizeof info && info.ssi_signo == SIGTERM)
            break;
    }
    return status;
}

static double seconds(const char *text, const char *name) {
    char *end;
    double value = strtod(text, &end);
    if (end == text || *end != '\0' || !isfinite(value) || value <= 0) {
        fprintf(stderr, "init: %s must be a positive number of seconds, not %s\n", name, text);
        exit(2);
    }
    return value;
}

#define READY "\x06" /* ASCII ACK, the first byte of stdout; the server strips it */

static void expire(void) {
    kill(-1, SIGKILL); /* from a namespace's init: every other process of the namespace */
    _exit(128 + SIGKILL);
}

/* Start the launcher in its own process group, the write end of `start` as its fd 3. */
static pid_t spawn(char **argv, const sigset_t *mask, int start[2]) {
    pid_t pid = fork();
    if (pid < 0) {
        perror("init: fork");
        exit(2);
    }
    if (pid > 0) {
        setpgid(pid, pid); /* also here, so the group exists before we signal it */
        return pid;
    }
    setpgid(0, 0);
    if (dup2(start[1], START_FD) < 0) { /* dup2 clears close-on-exec on the copy */
        perror("init: dup2");
        _exit(2);
    }
    sigprocmask(SIG_SETMASK, mask, NULL);
    setenv("EXECSTREAM_START_FD", "3", 1);
    execvp(argv[0], argv);
    fprintf(stderr, "init: cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* The wall time the launcher sent, capped; *ask is set when it asked for the held signals. */
static double read_wall_time(int fd, double max_wall, pid_t launcher, int *ask) {
    char text[96] = {0};
    ssize_t n = read(fd, text, sizeof text - 1);
    if (n <= 0)
        return -1; /* closed without a message: no program started, the idle deadline holds */
    *ask = strstr(text, "held?") != NULL;
    char *end;
    double wall = strtod(text, &end);
    if (end == text || !isfinite(wall) || wall <= 0 || wall > max_wall)
        wall = max_wall;
    /* "base CPU RSS_KB": the launcher measured itself just before the program (exact; it
       is still ours then). Otherwise we read /proc now, a moment after the program began. */
    char *base = strstr(end, "base");
    if (base == NULL || sscanf(base, "base %lf %ld", &base_cpu, &base_rss_kb) != 2)
        baseline(launcher, strstr(end, "exec") != NULL);
    return wall;
}

/* Pass on the signals held until the program's start. A launcher that asked for them
   ("held?") gets their numbers ("held 2 15\n") and raises them itself, at once: sent from
   here, one could land just before the program blocks and go unnoticed (an interpreter
   that defers its handlers to its next check, under gVisor: a Stop lost). */
static void pass_held(int fd, pid_t launcher, int ask) {
    char text[16 + HELD_MAX * 4] = "held";
    size_t used = 4;
    for (int i = 0; i < held_count; i++)
        used += (size_t)snprintf(text + used, sizeof text - used, " %d", held[i]);
    text[used++] = '\n';
    if (!ask || write(fd, text, used) != (ssize_t)used)
        for (int i = 0; i < held_count; i++)
            kill(-launcher, held[i]);
    held_count = 0;
}

/* Reap every exited child; true (and *status set) once the launcher is among them. */
static int reap(pid_t launcher, int *status) {
    int ended = 0, wstatus;
    pid_t pid;
    struct rusage ru;
    while ((pid = wait4(-1, &wstatus, WNOHANG, &ru)) > 0) {
        account(&ru);
        if (pid != launcher)
            continue;
        ended = 1;
        *status = WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : WEXITSTATUS(wstatus);
    }
    return ended;
}

int main(int argc, char **argv) {
    if (argc < 6 || strcmp(argv[4], "--") != 0) {
        fprintf(stderr, "usage: init IDLE_SECONDS MAX_WALL_SECONDS GRACE_SECONDS -- LAUNCHER...\n");
        return 2;
    }
    double idle = seconds(argv[1], "IDLE_SECONDS");
    double max_wall = seconds(argv[2], "MAX_WALL_SECONDS");
    double grace = seconds(argv[3], "GRACE_SECONDS");
    double deadline = now() + idle;

    prctl(PR_SET_DUMPABLE, 0);
    take_report_key();
    warm_up();
    sigset_t all, original;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, &original);
    int signals = signalfd(-1, &all, SFD_CLOEXEC);
    int start[2];
    /* A socket, not a pipe: the launcher may read the held signals back (pass_held). */
    if (signals < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, start) < 0) {
        perror("init: signalfd or socketpair");
        return 2;
    }
    /* Say we are ready: from here on no signal sent to us is lost. Before this point the
       kernel drops any signal sent to a namespace's init that has no handler, so the server
       waits for this byte before it lets anyone signal the container. */
    if (write(STDOUT_FILENO, READY, 1) != 1) {
        perror("init: ready");
        return 2;
    }
    pid_t launcher = spawn(argv + 5, &original, start);
    close(start[1]);

    for (;;) {
        double left = deadline - now();
        if (left <= 0)
            expire();
        struct pollfd fds[2] = {{signals, POLLIN, 0}, {start[0], POLLIN, 0}};
        int ready = poll(fds, start[0] < 0 ? 1 : 2, (int)ceil(left * 1000));
        if (ready < 0 && errno != EINTR) {
            perror("init: poll");
            expire();
        }
        if (ready <= 0)
            continue;
        if (start[0] >= 0 && fds[1].revents) {
            int ask = 0;
            double wall = read_wall_time(start[0], max_wall, launcher, &ask);
            if (wall > 0) { /* the program starts */
                deadline = now() + wall + grace;
                base_oom_kills = oom_kills();
            }
            pass_held(start[0], launcher, ask);
            close(start[0]); /* one message: nothing written later can move the deadline */
            start[0] = -1;
        }
        if (!fds[0].revents)
            continue;
        struct signalfd_siginfo info;
        if (read(signals, &info, sizeof info) != sizeof info)
            continue;
        int status;
        if (info.ssi_signo == SIGCHLD) {
            if (reap(launcher, &status)) {
                if (report_usage(status) && linger > 0)
                    return linger_then_exit(signals, status);
                return status;
            }
            continue;
        }
        /* A signal for the program that comes while the launcher is still starting can be
           lost: an interpreter that is interrupted inside its own start-up may report the
           exception as "ignored" and go on (seen with Python under gVisor). It is held
           until the launcher says the program starts, then passed on. */
        if (start[0] >= 0) {
            if (held_count < HELD_MAX)
                held[held_count++] = (int)info.ssi_signo;
            continue;
        }
        kill(-launcher, (int)info.ssi_signo);
    }
}
