/*
 * The benchmark's load client in C: what bench/wsload.py does, for a fraction
 * of its CPU, so that on a machine where client and server share the CPUs the
 * server gets most of them (and --workers 2 has a second CPU to scale onto).
 *
 * Same arguments and the same JSON lines on stdout as bench/wsload.py:
 * opens --connections sockets (at most --concurrency handshakes at once, 200), waits
 * until each has had --initial-frames text frames, lets --settle seconds pass,
 * prints {"event": "connected", ...}; then for every "go SECONDS" line on stdin
 * counts what arrives for that long and prints {"event": "window", ...}. Any
 * other line ends it. Latency is sampled from one value in --sample-every:
 * its "timestamp" (set when the value was published) to now; with "go SECONDS
 * EARLY_BEFORE LATE_AFTER" (seconds since the epoch) the window line also has
 * the latencies of the values published before the one and from the other on
 * ("early_latency_p50_ms", "late_latency_p50_ms" and their histograms). Values come as
 * metric_update messages, or several to a metric_updates message on sockets
 * opened with ?updates=batch (the --path given).
 *
 * One process, one epoll loop: --processes is accepted and ignored; for more
 * sockets than one process may hold, bench/__main__.py starts several, each
 * with its own --source addresses in 127.0.0.0/8 (a comma-separated list,
 * taken in turn per socket: the kernel finds a free ephemeral port quickly
 * only while most of an address's are free, see bench/RESULTS.md). Each window line also carries the sampled latencies
 * as a histogram ("latency_histogram": [[bucket, count], ...], bucket b holding
 * latencies around HIST_BASE^b microseconds), which merges across processes.
 * A reconnect storm: after "storm INITIAL PATH RESUME" on stdin (the server is
 * about to be killed and started again), every socket that the server closes
 * is opened again at PATH (retrying while the port refuses), waits for INITIAL
 * text frames, sends the text RESUME (no spaces) and counts as live again when
 * its "complete" arrives; once all are, {"event": "storm", ...} is printed.
 *
 * Built by bench/__main__.py with the system's C compiler (cc -O2).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int concurrency = 200; /* handshakes in flight at most (--concurrency) */
#define READ_CHUNK 65536
#define STDIN_TAG UINT32_MAX
#define HIST_BASE 1.02 /* 1 % relative error at most */
#define HIST_BUCKETS 1024

enum { CONNECTING, HANDSHAKE, OPEN, CLOSED };

typedef struct {
    int fd;
    int state;
    int initial_left;
    int resumed; /* storm: resume sent, waiting for its "complete" */
    double retry_at; /* storm: when to connect again (0: not waiting) */
    unsigned char *buf;
    size_t len, cap;
} Conn;

static const char UPDATE_PREFIX[] = "{\"action\":\"metric_update\",";
static const char BATCH_PREFIX[] = "{\"action\":\"metric_updates\",";
static const char TIMESTAMP_KEY[] = "\"timestamp\":\"";
static const char COMPLETE_PREFIX[] = "{\"action\":\"complete\"";

/* The storm (see the top of this file). */
static int storming, storm_initial, storm_live, storm_reported;
static long long storm_attempts;
static double storm_started;
static char *storm_path, *storm_resume;
static int waiting_retry;

static Conn *conns;
static int n_conns, initial_frames, sample_every = 50;
static int set_up, alive, opening, next_to_open;
static int counting;
static long long frames, updates;
/* Sampled latencies in seconds: all of a window's, and apart those of values
 * published before `early_before` and from `late_after` on (seconds since the
 * epoch, from "go SECONDS EARLY_BEFORE LATE_AFTER"): a latency that grows
 * through the window is a queue that grows, however short the window. */
typedef struct {
    double *v;
    size_t n, cap;
} Samples;
static Samples samples, early, late;
static double early_before, late_after;
static int epfd;
#define MAX_SOURCES 64
static struct sockaddr_in server_addr, source_addrs[MAX_SOURCES];
static int n_sources;
static char **requests;
static const char *host = "127.0.0.1";
static int port;
static char **cookies;
static int n_cookies;
static size_t *request_lens;

static double now_mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double now_real(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void fail(const char *what) {
    fprintf(stderr, "wsload: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* "2026-11-29T05:30:45.123456+00:00" (UTC, as the publisher writes it) to seconds since the epoch. */
static int parse_timestamp(const unsigned char *p, size_t n, double *out) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (n < 19) return 0;
    char text[40];
    size_t k = n < sizeof text - 1 ? n : sizeof text - 1;
    memcpy(text, p, k);
    text[k] = 0;
    char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) return 0;
    double fraction = 0;
    if (*rest == '.') {
        double scale = 0.1;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, scale /= 10) fraction += (*rest - '0') * scale;
    }
    *out = (double)timegm(&tm) + fraction;
    return 1;
}

static void push_sample(Samples *to, double seconds) {
    if (to->n == to->cap) {
        to->cap = to->cap ? to->cap * 2 : 4096;
        to->v = realloc(to->v, to->cap * sizeof *to->v);
        if (!to->v) fail("realloc");
    }
    to->v[to->n++] = seconds;
}

/* A sampled value published at `sent` (seconds since the epoch) arrived now. */
static void add_sample(double sent) {
    double seconds = now_real() - sent;
    push_sample(&samples, seconds);
    if (sent < early_before) push_sample(&early, seconds);
    if (late_after && sent >= late_after) push_sample(&late, seconds);
}

static void sample_latency(const unsigned char *payload, size_t n) {
    const unsigned char *key = memmem(payload, n, TIMESTAMP_KEY, sizeof TIMESTAMP_KEY - 1);
    double sent;
    if (!key) return;
    key += sizeof TIMESTAMP_KEY - 1;
    if (parse_timestamp(key, n - (size_t)(key - payload), &sent)) add_sample(sent);
}

static int has_prefix(const unsigned char *payload, size_t n, const char *prefix, size_t k) {
    return n >= k && !memcmp(payload, prefix, k);
}

/* A metric_updates payload: entries {"timestamp":"…","values":[[metric_id,id,value],…]}.
 * Each '[' followed by a digit or '-' opens one value; a sampled value's time is
 * its entry's timestamp (parsed only then: strptime per entry would cost more
 * than everything else here). */
static void count_batch(const unsigned char *p, size_t n) {
    const size_t key_len = sizeof TIMESTAMP_KEY - 1;
    const unsigned char *stamp = NULL;
    for (size_t i = 0; i + 1 < n; i++) {
        if (p[i] == '"' && n - i >= key_len && !memcmp(p + i, TIMESTAMP_KEY, key_len)) {
            stamp = p + i + key_len;
            i += key_len - 1;
        } else if (p[i] == '[' && ((p[i + 1] >= '0' && p[i + 1] <= '9') || p[i + 1] == '-')) {
            double sent;
            updates++;
            if (updates % sample_every == 0 && stamp && parse_timestamp(stamp, n - (size_t)(stamp - p), &sent))
                add_sample(sent);
        }
    }
}

static double now_mono(void);
static double started_at;

static void close_conn(Conn *c) {
    if (c->state == CLOSED) return;
    if (c->state == OPEN) alive--;
    if (!storming && (c->state == CONNECTING || c->state == HANDSHAKE)) {
        fprintf(stderr, "wsload: a socket closed before its handshake completed\n");
        exit(1);
    }
    if (!storming && c->state == OPEN && c->initial_left) {
        /* Refused or closed during its set-up: the run would wait for it forever. */
        fprintf(stderr, "wsload: a socket closed before it was set up (%d of %d were, %.1f s)\n", set_up, n_conns,
                now_mono() - started_at);
        exit(1);
    }
    if (storming && (c->state == CONNECTING || c->state == HANDSHAKE)) opening--;
    c->state = CLOSED;
    close(c->fd);
    c->len = 0;
    if (storming) {
        /* Again soon, spread over 100-200 ms so refused ones do not spin. */
        c->retry_at = now_mono() + 0.1 + (rand() % 100) / 1000.0;
        c->resumed = 0;
        waiting_retry++;
    }
}

/* A masked client text frame (RFC 6455 5.3): the server refuses unmasked ones. */
static void send_text(Conn *c, const char *text) {
    size_t n = strlen(text), header = n < 126 ? 2 : 4;
    unsigned char *frame = malloc(header + 4 + n);
    const unsigned char mask[4] = {0x5a, 0x17, 0xc3, 0x8e};
    frame[0] = 0x81;
    if (n < 126) {
        frame[1] = (unsigned char)(0x80 | n);
    } else {
        frame[1] = 0x80 | 126;
        frame[2] = (unsigned char)(n >> 8);
        frame[3] = (unsigned char)n;
    }
    memcpy(frame + header, mask, 4);
    for (size_t i = 0; i < n; i++) frame[header + 4 + i] = (unsigned char)text[i] ^ mask[i % 4];
    if (write(c->fd, frame, header + 4 + n) < 0 && errno != EAGAIN) close_conn(c);
    free(frame);
}

static void open_next(void);

/* Frames in c->buf: count them, answer pings; keeps an incomplete frame for later. */
static void read_frames(Conn *c) {
    size_t off = 0;
    while (c->len - off >= 2) {
        unsigned char *f = c->buf + off;
        int opcode = f[0] & 0x0F;
        uint64_t size = f[1] & 0x7F;
        size_t header = 2;
        if (size == 126) {
            if (c->len - off < 4) break;
            size = ((uint64_t)f[2] << 8) | f[3];
            header = 4;
        } else if (size == 127) {
            if (c->len - off < 10) break;
            size = 0;
            for (int i = 2; i < 10; i++) size = (size << 8) | f[i];
            header = 10;
        }
        if (c->len - off < header + size) break;
        unsigned char *payload = f + header;
        if (opcode == 1 && storming && c->resumed) {
            if (has_prefix(payload, size, COMPLETE_PREFIX, sizeof COMPLETE_PREFIX - 1)) {
                c->resumed = 0;
                storm_live++;
            }
        } else if (opcode == 1 && c->initial_left) {
            if (--c->initial_left == 0) {
                if (storming) {
                    send_text(c, storm_resume);
                    c->resumed = 1;
                } else {
                    set_up++;
                }
            }
        } else if (opcode == 1 && counting) {
            frames++;
            if (has_prefix(payload, size, UPDATE_PREFIX, sizeof UPDATE_PREFIX - 1)) {
                updates++;
                if (updates % sample_every == 0) sample_latency(payload, size);
            } else if (has_prefix(payload, size, BATCH_PREFIX, sizeof BATCH_PREFIX - 1)) {
                count_batch(payload, size);
            }
        } else if (opcode == 9 && size <= 125) {
            unsigned char pong[2 + 4 + 125] = {0x8A, (unsigned char)(0x80 | size), 0, 0, 0, 0};
            memcpy(pong + 6, payload, size);
            if (write(c->fd, pong, 6 + size) < 0 && errno != EAGAIN) close_conn(c);
        } else if (opcode == 8) {
            close_conn(c);
            return;
        }
        off += header + size;
    }
    if (off) {
        memmove(c->buf, c->buf + off, c->len - off);
        c->len -= off;
    }
}

static void on_readable(Conn *c) {
    for (;;) {
        if (c->cap - c->len < READ_CHUNK) {
            c->cap = c->len + READ_CHUNK * 2;
            c->buf = realloc(c->buf, c->cap);
            if (!c->buf) fail("realloc");
        }
        ssize_t got = read(c->fd, c->buf + c->len, c->cap - c->len);
        if (got < 0 && (errno == EAGAIN || errno == EINTR)) break;
        if (got <= 0) {
            close_conn(c);
            return;
        }
        c->len += (size_t)got;
        if (c->state == HANDSHAKE) {
            unsigned char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
            if (!end) continue;
            if (c->len < 12 || memcmp(c->buf, "HTTP/1.1 101", 12)) {
                fprintf(stderr, "wsload: upgrade refused: %.*s\n", (int)(end - c->buf), c->buf);
                exit(1);
            }
            size_t consumed = (size_t)(end - c->buf) + 4;
            memmove(c->buf, c->buf + consumed, c->len - consumed);
            c->len -= consumed;
            c->state = OPEN;
            alive++;
            opening--;
            open_next();
        }
        read_frames(c);
        if (c->state == CLOSED) return;
        if ((size_t)got < READ_CHUNK) break;
    }
}

static void on_writable(Conn *c, uint32_t index) {
    int error = 0;
    socklen_t len = sizeof error;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &len);
    if (error && storming) {
        close_conn(c);
        open_next();
        return;
    }
    if (error) {
        errno = error;
        fail("connect");
    }
    const char *request = requests[index % (uint32_t)n_conns];
    if (write(c->fd, request, request_lens[index % (uint32_t)n_conns]) < 0) fail("write");
    c->state = HANDSHAKE;
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = index};
    if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev)) fail("epoll_ctl");
}

static void open_one(uint32_t index);

static void open_next(void) {
    while (opening < concurrency && next_to_open < n_conns) open_one((uint32_t)next_to_open++);
    if (!storming || !waiting_retry) return;
    double now = now_mono();
    for (int i = 0; i < n_conns && opening < concurrency && waiting_retry; i++) {
        Conn *c = &conns[i];
        if (c->state == CLOSED && c->retry_at && c->retry_at <= now) {
            c->retry_at = 0;
            waiting_retry--;
            storm_attempts++;
            open_one((uint32_t)i);
        }
    }
}

static void open_one(uint32_t index) {
    {
        Conn *c = &conns[index];
        c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (c->fd < 0) fail("socket");
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (n_sources) {
            /* The port is chosen at connect(), per destination: each source
             * address then has its whole ephemeral range for this server. */
            setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            struct sockaddr_in *source_addr = &source_addrs[index % (uint32_t)n_sources];
            if (bind(c->fd, (struct sockaddr *)source_addr, sizeof *source_addr)) fail("bind");
        }
        c->state = CONNECTING;
        c->initial_left = storming ? storm_initial : initial_frames;
        if (!storming && initial_frames == 0) set_up++;
        if (connect(c->fd, (struct sockaddr *)&server_addr, sizeof server_addr) && errno != EINPROGRESS) {
            if (!storming) fail("connect");
        }
        struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = index};
        if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev)) fail("epoll_ctl");
        opening++;
    }
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_ms(const char *name, const Samples *from, double fraction) {
    if (!from->n) {
        printf(", \"%s\": null", name);
        return;
    }
    size_t i = (size_t)(fraction * (double)from->n);
    if (i >= from->n) i = from->n - 1;
    printf(", \"%s\": %.2f", name, from->v[i] * 1000);
}

static void print_histogram(const char *name, const Samples *from) {
    static long long counts[HIST_BUCKETS];
    memset(counts, 0, sizeof counts);
    for (size_t i = 0; i < from->n; i++) {
        double us = from->v[i] * 1e6;
        int b = us <= 1 ? 0 : (int)lround(log(us) / log(HIST_BASE));
        if (b >= HIST_BUCKETS) b = HIST_BUCKETS - 1;
        counts[b]++;
    }
    printf(", \"%s\": [", name);
    int first = 1;
    for (int b = 0; b < HIST_BUCKETS; b++) {
        if (!counts[b]) continue;
        printf("%s[%d, %lld]", first ? "" : ", ", b, counts[b]);
        first = 0;
    }
    printf("]");
}

/* One upgrade request per connection to `path` (a random key each, as RFC 6455 asks). */
static void build_requests(const char *path) {
    if (!requests) {
        requests = calloc((size_t)n_conns, sizeof *requests);
        request_lens = calloc((size_t)n_conns, sizeof *request_lens);
        srand((unsigned)getpid());
    }
    for (int i = 0; i < n_conns; i++) {
        unsigned char raw[16];
        char key[25];
        static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for (int k = 0; k < 16; k++) raw[k] = (unsigned char)rand();
        for (int k = 0, o = 0; k < 16; k += 3) {
            unsigned v = raw[k] << 16 | (k + 1 < 16 ? raw[k + 1] << 8 : 0) | (k + 2 < 16 ? raw[k + 2] : 0);
            key[o++] = b64[v >> 18 & 63];
            key[o++] = b64[v >> 12 & 63];
            key[o++] = k + 1 < 16 ? b64[v >> 6 & 63] : '=';
            key[o++] = k + 2 < 16 ? b64[v & 63] : '=';
        }
        key[24] = 0;
        free(requests[i]);
        int n = asprintf(&requests[i],
                         "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nCookie: dashboard_session=%s\r\n\r\n",
                         path, host, port, key, cookies[i % n_cookies]);
        if (n < 0) fail("asprintf");
        request_lens[i] = (size_t)n;
    }
}

static void rebuild_requests(const char *path) { build_requests(path); }

int main(int argc, char **argv) {
    const char *path = NULL, *source = NULL;
    double settle = 2.0;
    static struct option options[] = {
        {"host", required_argument, 0, 'h'},       {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'P'},       {"cookie", required_argument, 0, 'c'},
        {"connections", required_argument, 0, 'n'}, {"settle", required_argument, 0, 's'},
        {"sample-every", required_argument, 0, 'e'}, {"initial-frames", required_argument, 0, 'i'},
        {"processes", required_argument, 0, 'x'},  {"source", required_argument, 0, 'S'},
        {"concurrency", required_argument, 0, 'C'},
        {0, 0, 0, 0},
    };
    for (int opt; (opt = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'P': path = optarg; break;
        case 'c':
            cookies = realloc(cookies, (size_t)(n_cookies + 1) * sizeof *cookies);
            cookies[n_cookies++] = optarg;
            break;
        case 'n': n_conns = atoi(optarg); break;
        case 's': settle = atof(optarg); break;
        case 'e': sample_every = atoi(optarg); break;
        case 'i': initial_frames = atoi(optarg); break;
        case 'x': break;
        case 'S': source = optarg; break;
        case 'C': concurrency = atoi(optarg); break;
        default: return 2;
        }
    }
    if (!port || !path || !n_cookies || n_conns <= 0 || sample_every <= 0) {
        fprintf(stderr, "usage: wsload --port N --path P --cookie C [...] --connections N\n");
        return 2;
    }
    struct rlimit files;
    getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);

    server_addr.sin_family = AF_INET;
    server_addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &server_addr.sin_addr) != 1) {
        fprintf(stderr, "wsload: --host must be an IPv4 address\n");
        return 2;
    }
    for (const char *next = source; next && *next;) {
        const char *comma = strchr(next, ',');
        size_t length = comma ? (size_t)(comma - next) : strlen(next);
        char address[INET_ADDRSTRLEN];
        if (n_sources == MAX_SOURCES || length >= sizeof address) {
            fprintf(stderr, "wsload: --source takes at most %d IPv4 addresses, comma-separated\n", MAX_SOURCES);
            return 2;
        }
        memcpy(address, next, length);
        address[length] = '\0';
        source_addrs[n_sources].sin_family = AF_INET;
        if (inet_pton(AF_INET, address, &source_addrs[n_sources].sin_addr) != 1) {
            fprintf(stderr, "wsload: --source must be IPv4 addresses, comma-separated\n");
            return 2;
        }
        n_sources++;
        next = comma ? comma + 1 : NULL;
    }
    build_requests(path);

    conns = calloc((size_t)n_conns, sizeof *conns);
    epfd = epoll_create1(0);
    if (epfd < 0) fail("epoll_create1");
    struct epoll_event in = {.events = EPOLLIN, .data.u32 = STDIN_TAG};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, STDIN_FILENO, &in)) fail("epoll_ctl stdin");

    double started = now_mono(), cpu_started = cpu_seconds();
    started_at = started;
    double connect_seconds = -1, connect_cpu = 0, settled_at = 0;
    double window_end = 0, window_start = 0, window_cpu = 0;
    int connected_sent = 0;
    char line[8192];
    size_t line_len = 0;
    struct epoll_event events[512];
    open_next();
    for (;;) {
        double now = now_mono();
        if (connect_seconds < 0 && set_up == n_conns && next_to_open == n_conns) {
            connect_seconds = now - started;
            connect_cpu = cpu_seconds() - cpu_started;
            settled_at = now + settle;
        }
        if (connect_seconds >= 0 && !connected_sent && now >= settled_at) {
            printf("{\"event\": \"connected\", \"connect_seconds\": %.3f, \"client_cpu_seconds\": %.3f}\n",
                   connect_seconds, connect_cpu);
            fflush(stdout);
            connected_sent = 1;
        }
        if (counting && now >= window_end) {
            counting = 0;
            qsort(samples.v, samples.n, sizeof *samples.v, compare);
            qsort(early.v, early.n, sizeof *early.v, compare);
            qsort(late.v, late.n, sizeof *late.v, compare);
            printf("{\"event\": \"window\", \"alive\": %d, \"window_seconds\": %.3f, \"frames\": %lld, "
                   "\"updates\": %lld, \"latency_samples\": %zu",
                   alive, now - window_start, frames, updates, samples.n);
            print_ms("latency_p50_ms", &samples, 0.50);
            print_ms("latency_p95_ms", &samples, 0.95);
            print_ms("latency_p99_ms", &samples, 0.99);
            print_histogram("latency_histogram", &samples);
            if (late_after) {
                print_ms("early_latency_p50_ms", &early, 0.50);
                print_ms("late_latency_p50_ms", &late, 0.50);
                print_histogram("early_latency_histogram", &early);
                print_histogram("late_latency_histogram", &late);
            }
            printf(", \"client_cpu_seconds\": %.3f, \"client_processes\": 1}\n", cpu_seconds() - window_cpu);
            fflush(stdout);
        }
        if (storming) {
            open_next();
            if (!storm_reported && storm_live == n_conns) {
                storm_reported = 1;
                printf("{\"event\": \"storm\", \"seconds\": %.3f, \"live\": %d, \"connect_attempts\": %lld}\n",
                       now_mono() - storm_started, storm_live, storm_attempts);
                fflush(stdout);
            }
        }
        double next = counting ? window_end : (connect_seconds >= 0 && !connected_sent ? settled_at : 0);
        int timeout = next ? (int)((next - now) * 1000) + 1 : 100;
        if (timeout > 100) timeout = 100;
        if (storming && timeout > 10) timeout = 10;
        int ready = epoll_wait(epfd, events, 512, timeout < 0 ? 0 : timeout);
        if (ready < 0 && errno != EINTR) fail("epoll_wait");
        for (int i = 0; i < ready; i++) {
            uint32_t tag = events[i].data.u32;
            if (tag == STDIN_TAG) {
                ssize_t got = read(STDIN_FILENO, line + line_len, sizeof line - 1 - line_len);
                if (got <= 0) goto done;
                line_len += (size_t)got;
                line[line_len] = 0;
                char *newline;
                while ((newline = strchr(line, '\n'))) {
                    *newline = 0;
                    double seconds;
                    char path_arg[1024], resume_arg[4096];
                    if (sscanf(line, "storm %d %1023s %4095s", &storm_initial, path_arg, resume_arg) == 3) {
                        storming = 1;
                        storm_live = storm_reported = 0;
                        storm_attempts = 0;
                        storm_started = now_mono();
                        storm_path = strdup(path_arg);
                        storm_resume = strdup(resume_arg);
                        rebuild_requests(storm_path);
                        line_len -= (size_t)(newline + 1 - line);
                        memmove(line, newline + 1, line_len + 1);
                        continue;
                    }
                    early_before = late_after = 0;
                    if (sscanf(line, "go %lf %lf %lf", &seconds, &early_before, &late_after) < 1 || !connected_sent)
                        goto done;
                    frames = updates = 0;
                    samples.n = early.n = late.n = 0;
                    counting = 1;
                    window_start = now_mono();
                    window_end = window_start + seconds;
                    window_cpu = cpu_seconds();
                    line_len -= (size_t)(newline + 1 - line);
                    memmove(line, newline + 1, line_len + 1);
                }
                continue;
            }
            Conn *c = &conns[tag];
            if (c->state == CONNECTING && (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
                on_writable(c, tag);
            else if (c->state == HANDSHAKE || c->state == OPEN)
                on_readable(c);
        }
    }
done:
    for (int i = 0; i < n_conns; i++)
        if (conns[i].state != CLOSED && conns[i].fd > 0) close(conns[i].fd);
    printf("{\"event\": \"bye\"}\n");
    return 0;
}
