/*
 * The load generator of benchmarks/transports.py, in C so that it is never
 * the bottleneck: a Python client on uvloop spends about as much CPU per
 * round trip as the server it measures, and saturates its own core first.
 * transports.py compiles it (cc -O2) into a temporary directory per run.
 *
 *   transport_loadgen pingpong PORT CONNECTIONS WARMUP SECONDS SERVER_PID
 *   transport_loadgen accept   PORT CONCURRENCY WARMUP SECONDS SERVER_PID
 *
 * pingpong: CONNECTIONS connections to 127.0.0.1:PORT; on each, wait for the
 * server's one-byte greeting, then send 64 bytes, wait for the 64 back,
 * repeat. accept: CONCURRENCY connections at a time, each opened, held until
 * the server's greeting arrives (the server has accepted it and run its
 * handler), then reset. Both count completed cycles over SECONDS after
 * WARMUP seconds, and print one line:
 *
 *   RESULT {"seconds": s, "rate": r, "count": n, "server_cpu": f,
 *           "server_user_cpu": f, "server_wait": f, "client_cpu": f, "client_wait": f}
 *
 * with the CPU time used in the window by the server (from /proc/PID/stat,
 * see proc(5); all of it, and user mode only) and by this process
 * (getrusage(2)), and the time each waited for its CPU while it was runnable
 * (/proc/PID/schedstat), as fractions of the window.
 * Connections are closed with SO_LINGER {1, 0}, i.e. reset, so that none
 * waits in TIME_WAIT and ephemeral ports never run out.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define GREETING '!'
#define PAYLOAD_SIZE 64
#define MAX_EVENTS 256

static struct sockaddr_in server_address;
static long clock_ticks;

static void die(const char *what)
{
    fprintf(stderr, "transport_loadgen: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void fail(const char *what)
{
    fprintf(stderr, "transport_loadgen: %s\n", what);
    exit(1);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double own_cpu(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        die("getrusage");
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

/* utime and stime of a whole process: fields 14 and 15 of /proc/PID/stat. */
static void process_cpu(int pid, double *user, double *system)
{
    char path[64], text[4096];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die(path);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *p = strrchr(text, ')'); /* the command name may hold spaces */
    if (!p)
        fail("unreadable /proc/PID/stat");
    unsigned long utime = 0, stime = 0;
    /* After ")": state(3) ppid pgrp session tty_nr tpgid flags minflt cminflt
       majflt cmajflt utime(14) stime(15). */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime,
               &stime) != 2)
        fail("unreadable /proc/PID/stat");
    *user = (double)utime / clock_ticks;
    *system = (double)stime / clock_ticks;
}

/* Nanoseconds the process's main thread spent waiting for a CPU while
   runnable: the second field of /proc/PID/schedstat. Another program on the
   server's CPU shows up here. */
static double run_queue_wait(int pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/schedstat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0.0; /* the kernel keeps no scheduler statistics */
    unsigned long long on_cpu = 0, waiting = 0;
    int got = fscanf(f, "%llu %llu", &on_cpu, &waiting);
    fclose(f);
    return got == 2 ? waiting / 1e9 : 0.0;
}

static void reset_close(int fd)
{
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    close(fd);
}

struct window {
    double t0, own0, user0, system0, wait0, own_wait0;
    long count0;
};

static void window_start(struct window *w, int server_pid, long count)
{
    w->t0 = now();
    w->own0 = own_cpu();
    process_cpu(server_pid, &w->user0, &w->system0);
    w->wait0 = run_queue_wait(server_pid);
    w->own_wait0 = run_queue_wait(getpid());
    w->count0 = count;
}

static void window_report(const struct window *w, int server_pid, long count)
{
    double seconds = now() - w->t0;
    double own = own_cpu() - w->own0;
    double user, system;
    process_cpu(server_pid, &user, &system);
    user -= w->user0;
    system -= w->system0;
    double wait = run_queue_wait(server_pid) - w->wait0;
    double own_wait = run_queue_wait(getpid()) - w->own_wait0;
    long n = count - w->count0;
    printf("RESULT {\"seconds\": %.6f, \"rate\": %.1f, \"count\": %ld, \"server_cpu\": %.4f,"
           " \"server_user_cpu\": %.4f, \"server_wait\": %.4f, \"client_cpu\": %.4f,"
           " \"client_wait\": %.4f}\n",
           seconds, n / seconds, n, (user + system) / seconds, user / seconds, wait / seconds,
           own / seconds, own_wait / seconds);
    fflush(stdout);
}

static int pingpong(int connections, double warmup, double seconds, int server_pid)
{
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    int *fds = calloc(connections, sizeof *fds);
    int *pending = calloc(connections, sizeof *pending);
    if (!fds || !pending)
        fail("out of memory");
    char payload[PAYLOAD_SIZE], buf[4096];
    memset(payload, 'x', sizeof payload);
    int one = 1;
    for (int i = 0; i < connections; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        if (fd < 0)
            die("socket");
        if (connect(fd, (struct sockaddr *)&server_address, sizeof server_address) != 0)
            die("connect");
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
            die("epoll_ctl");
        fds[i] = fd;
        pending[i] = 1; /* the greeting */
    }
    long count = 0;
    struct window w;
    int measuring = 0;
    double start = now(), warm_end = start + warmup, end = warm_end + seconds;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            ssize_t r = read(fds[i], buf, sizeof buf);
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r < 0)
                die("read");
            if (r == 0)
                fail("the server closed a connection");
            pending[i] -= (int)r;
            if (pending[i] < 0)
                fail("the server sent more than it was sent");
            if (pending[i] == 0) {
                pending[i] = PAYLOAD_SIZE;
                count++;
                if (write(fds[i], payload, PAYLOAD_SIZE) != PAYLOAD_SIZE)
                    die("write");
            }
        }
        double t = now();
        if (!measuring && t >= warm_end) {
            window_start(&w, server_pid, count);
            measuring = 1;
        } else if (measuring && t >= end) {
            window_report(&w, server_pid, count);
            break;
        }
    }
    for (int i = 0; i < connections; i++)
        reset_close(fds[i]);
    close(ep);
    free(fds);
    free(pending);
    return 0;
}

static int open_nonblocking(int ep, int slot)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&server_address, sizeof server_address) != 0 &&
        errno != EINPROGRESS)
        die("connect");
    /* Readable once the greeting arrives; a failed connect reports EPOLLERR. */
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (unsigned)slot};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
        die("epoll_ctl");
    return fd;
}

static int accept_rate(int concurrency, double warmup, double seconds, int server_pid)
{
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1");
    int *fds = calloc(concurrency, sizeof *fds);
    if (!fds)
        fail("out of memory");
    for (int i = 0; i < concurrency; i++)
        fds[i] = open_nonblocking(ep, i);
    long count = 0;
    struct window w;
    int measuring = 0;
    double start = now(), warm_end = start + warmup, end = warm_end + seconds;
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(ep, events, MAX_EVENTS, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int k = 0; k < n; k++) {
            int i = (int)events[k].data.u32;
            char c;
            ssize_t r = read(fds[i], &c, 1);
            if (r < 0 && errno == EAGAIN)
                continue;
            if (r < 0)
                die("read (connect)");
            if (r == 0 || c != GREETING)
                fail("expected the server's greeting");
            count++;
            reset_close(fds[i]); /* close() also takes it out of the epoll set */
            fds[i] = open_nonblocking(ep, i);
        }
        double t = now();
        if (!measuring && t >= warm_end) {
            window_start(&w, server_pid, count);
            measuring = 1;
        } else if (measuring && t >= end) {
            window_report(&w, server_pid, count);
            break;
        }
    }
    for (int i = 0; i < concurrency; i++)
        reset_close(fds[i]);
    close(ep);
    free(fds);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 7) {
        fprintf(stderr, "usage: %s pingpong|accept PORT N WARMUP SECONDS SERVER_PID\n", argv[0]);
        return 2;
    }
    clock_ticks = sysconf(_SC_CLK_TCK);
    server_address.sin_family = AF_INET;
    server_address.sin_port = htons((unsigned short)atoi(argv[2]));
    server_address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int n = atoi(argv[3]);
    double warmup = atof(argv[4]), seconds = atof(argv[5]);
    int server_pid = atoi(argv[6]);
    if (n <= 0)
        fail("N must be positive");
    if (strcmp(argv[1], "pingpong") == 0)
        return pingpong(n, warmup, seconds, server_pid);
    if (strcmp(argv[1], "accept") == 0)
        return accept_rate(n, warmup, seconds, server_pid);
    fail("the mode is pingpong or accept");
    return 2;
}
