/* main.c - the command line (websockify's positional form and -c FILE), startup order,
 * signals (TERM/INT drain, HUP reload, USR1 metrics) and the event loop. No protocol
 * logic lives here. */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <malloc.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "addr.h"
#include "config.h"
#include "healthcheck.h"
#include "log.h"
#include "metrics.h"
#include "worker.h"

#ifndef WSPLICE_VERSION
#define WSPLICE_VERSION "0.0.0-dev"
#endif

#define EXIT_RUNTIME    1
#define EXIT_USAGE      2
#define FD_RESERVE      16 /* stdio, DNS, signals, the log */
#define REJECT_HEADROOM 16 /* descriptors kept for 503 replies past max_sessions */

struct options {
    const char *config_path;
    bool check_only;
    bool verbose;
    const char *heartbeat; /* websockify --heartbeat */
    const char *web;       /* websockify --web: a directory served to plain HTTP requests */
    const char *unix_target;
    const char *cert, *key, *cafile, *ssl_version, *ssl_ciphers; /* websockify's TLS flags */
    bool ssl_only, ssl_target, verify_client;
    const char *source;
    const char *target;
};

/* The main thread: signals, reloads, and the workers it started. */
struct app {
    struct event_base *base; /* signals and worker ends only; sessions live on the workers */
    struct worker_group group;
    struct worker **workers;
    size_t worker_count;
    size_t workers_running;
    int done_fd; /* eventfd: each worker writes it once when its loop has ended */
    struct event *done_ev;
    struct config *cfg;
    const char *config_path; /* NULL when running from the command line */
    bool verbose;
    bool draining;
};

static void
usage(FILE *out)
{
    fprintf(out, "usage: wsplice [options] [source_addr:]source_port target_addr:target_port\n"
                 "       wsplice [options] [source_addr:]source_port --unix-target PATH\n"
                 "       wsplice [options] -c FILE\n"
                 "\n"
                 "Accepts WebSocket connections and splices each one to a TCP backend.\n"
                 "\n"
                 "  -c, --config FILE     run from an INI file (see conf/wsplice.ini)\n"
                 "  -t, --test            check the configuration and exit: 0 good, 2 bad\n"
                 "  -v, --verbose         debug logging; with -t, print the effective configuration\n"
                 "  -V, --version         print the version and exit\n"
                 "  -h, --help            print this help and exit\n"
                 "  --heartbeat SECONDS   ping clients after SECONDS without traffic (websockify)\n"
                 "  --unix-target PATH    proxy to a unix socket instead of target_addr:target_port\n"
                 "  --web DIR             serve the files in DIR to requests without a WebSocket upgrade\n"
                 "  --cert FILE           serve wss:// too, with this PEM certificate chain\n"
                 "  --key FILE            its private key (default: in the --cert file)\n"
                 "  --ssl-only            refuse plain ws://\n"
                 "  --ssl-version V       oldest TLS version: tlsv1_2 (default) or tlsv1_3\n"
                 "  --ssl-ciphers LIST    TLS 1.2 cipher list (OpenSSL syntax)\n"
                 "  --cafile FILE         CA for client certificates; --verify-client requires them\n"
                 "  --ssl-target          connect to the target over TLS (its certificate is verified)\n"
                 "  --healthcheck URL     one WebSocket handshake against ws://host:port/path, then exit:\n"
                 "                        0 if a gateway answered HTTP (101, or 502 with its backend down)\n"
                 "  --healthcheck-strict URL   the same, but only 101 is healthy\n"
                 "\n"
                 "Signals: TERM/INT close sessions with 1001 and exit once drained; HUP reloads\n"
                 "routes and limits from -c FILE; USR1 logs the counters.\n");
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void
die_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "wsplice: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (try wsplice --help)\n");
    exit(EXIT_USAGE);
}

static void
parse_args(int argc, char **argv, struct options *opt)
{
    enum {
        OPT_HEARTBEAT = 256,
        OPT_UNIX_TARGET,
        OPT_CERT,
        OPT_KEY,
        OPT_SSL_ONLY,
        OPT_SSL_TARGET,
        OPT_VERIFY_CLIENT,
        OPT_CAFILE,
        OPT_SSL_VERSION,
        OPT_SSL_CIPHERS,
        OPT_HEALTHCHECK,
        OPT_HEALTHCHECK_STRICT,
        OPT_WEB,
    };
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'},
        {"test", no_argument, NULL, 't'},
        {"verbose", no_argument, NULL, 'v'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"heartbeat", required_argument, NULL, OPT_HEARTBEAT},
        {"unix-target", required_argument, NULL, OPT_UNIX_TARGET},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"ssl-only", no_argument, NULL, OPT_SSL_ONLY},
        {"ssl-target", no_argument, NULL, OPT_SSL_TARGET},
        {"verify-client", no_argument, NULL, OPT_VERIFY_CLIENT},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"ssl-version", required_argument, NULL, OPT_SSL_VERSION},
        {"ssl-ciphers", required_argument, NULL, OPT_SSL_CIPHERS},
        {"healthcheck", required_argument, NULL, OPT_HEALTHCHECK},
        {"healthcheck-strict", required_argument, NULL, OPT_HEALTHCHECK_STRICT},
        {"web", required_argument, NULL, OPT_WEB},
        {NULL, 0, NULL, 0},
    };
    int c;

    opterr = 0;
    while ((c = getopt_long(argc, argv, ":c:tvVh", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            opt->config_path = optarg;
            break;
        case 't':
            opt->check_only = true;
            break;
        case 'v':
            opt->verbose = true;
            break;
        case 'V':
            printf("wsplice %s\n", WSPLICE_VERSION);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        case OPT_HEARTBEAT:
            opt->heartbeat = optarg;
            break;
        case OPT_UNIX_TARGET:
            opt->unix_target = optarg;
            break;
        case OPT_CERT:
            opt->cert = optarg;
            break;
        case OPT_KEY:
            opt->key = optarg;
            break;
        case OPT_SSL_ONLY:
            opt->ssl_only = true;
            break;
        case OPT_SSL_TARGET:
            opt->ssl_target = true;
            break;
        case OPT_VERIFY_CLIENT:
            opt->verify_client = true;
            break;
        case OPT_CAFILE:
            opt->cafile = optarg;
            break;
        case OPT_SSL_VERSION:
            opt->ssl_version = optarg;
            break;
        case OPT_SSL_CIPHERS:
            opt->ssl_ciphers = optarg;
            break;
        case OPT_WEB:
            opt->web = optarg;
            break;
        case OPT_HEALTHCHECK:
        case OPT_HEALTHCHECK_STRICT:
            exit(healthcheck_run(optarg, c == OPT_HEALTHCHECK_STRICT));
        case ':':
            die_usage("option %s needs a value", argv[optind - 1]);
            break;
        default:
            die_usage("unknown option %s", argv[optind - 1]);
        }
    }
    int rest = argc - optind;
    if (opt->config_path != NULL) {
        if (rest > 0)
            die_usage("with -c, addresses come from the file, not the command line (got '%s')", argv[optind]);
        if (opt->heartbeat || opt->unix_target || opt->cert || opt->key || opt->ssl_only || opt->ssl_target ||
            opt->verify_client || opt->cafile || opt->ssl_version || opt->ssl_ciphers || opt->web)
            die_usage("%s", "websockify-style flags are for the command-line form; with -c use the INI file");
        return;
    }
    if (opt->cert == NULL && (opt->key || opt->ssl_only || opt->verify_client || opt->cafile ||
                              opt->ssl_version || opt->ssl_ciphers))
        die_usage(
            "%s",
            "--key, --ssl-only, --verify-client, --cafile, --ssl-version and --ssl-ciphers need --cert");
    if (opt->verify_client && opt->cafile == NULL)
        die_usage("%s", "--verify-client needs --cafile (the CA that signs client certificates)");
    const char *texts[] = {opt->cert, opt->key, opt->cafile, opt->ssl_ciphers, opt->web};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        if (texts[i] != NULL && strpbrk(texts[i], "\n\r;") != NULL)
            die_usage("a file name or cipher list with a newline or ';' is not supported: '%s'", texts[i]);
    if (rest == 0)
        die_usage("%s", "expected [source_addr:]source_port target_addr:target_port, or -c FILE");
    opt->source = argv[optind];
    if (opt->unix_target != NULL) {
        if (rest > 1)
            die_usage("unexpected argument '%s' (--unix-target replaces the target address)",
                      argv[optind + 1]);
        return;
    }
    if (rest == 1)
        die_usage("missing target address after '%s' (expected target_addr:target_port)", opt->source);
    if (rest > 2)
        die_usage("unexpected argument '%s' (wrapping a command is not supported)", argv[optind + 2]);
    opt->target = argv[optind + 1];
}

/* Turn the websockify-style command line into INI text, so it goes through the same
 * parser and checks as a file. Addresses are checked here first for a one-line error. */
static char *
config_text_from_args(const struct options *opt)
{
    struct addr a;
    enum addr_parse_result r;
    char target[ADDR_STR_MAX + 8];
    char *text = NULL;
    size_t len = 0;

    r = addr_parse(opt->source, ADDR_ALLOW_NO_HOST | ADDR_ALLOW_PORT_ZERO, &a);
    if (r != ADDR_OK) {
        fprintf(stderr, "wsplice: bad source address '%s': %s\n", opt->source, addr_parse_result_str(r));
        exit(EXIT_USAGE);
    }
    if (opt->unix_target != NULL) {
        snprintf(target, sizeof target, "unix:%s", opt->unix_target);
    } else {
        r = addr_parse(opt->target, 0, &a);
        if (r != ADDR_OK) {
            fprintf(stderr, "wsplice: bad target address '%s': %s\n", opt->target, addr_parse_result_str(r));
            exit(EXIT_USAGE);
        }
        snprintf(target, sizeof target, "%s", opt->target);
    }
    FILE *fp = open_memstream(&text, &len);
    if (fp == NULL)
        return NULL;
    fprintf(fp, "[gateway]\n");
    if (opt->heartbeat != NULL)
        fprintf(fp, "ping_interval_s = %s\n", opt->heartbeat);
    fprintf(fp, "[listener:default]\nbind = %s\n", opt->source);
    if (opt->web != NULL)
        fprintf(fp, "web_root = %s\n", opt->web);
    if (opt->cert != NULL) {
        fprintf(fp, "tls_cert = %s\n", opt->cert);
        if (opt->key != NULL)
            fprintf(fp, "tls_key = %s\n", opt->key);
        if (opt->ssl_only)
            fprintf(fp, "tls_only = yes\n");
        if (opt->cafile != NULL)
            fprintf(fp, "tls_client_ca = %s\n", opt->cafile);
        if (opt->verify_client)
            fprintf(fp, "tls_verify_client = require\n");
        if (opt->ssl_ciphers != NULL)
            fprintf(fp, "tls_ciphers = %s\n", opt->ssl_ciphers);
        if (opt->ssl_version != NULL) {
            /* websockify's names; TLS 1.0 and 1.1 are never offered. */
            const char *v = strcmp(opt->ssl_version, "tlsv1_3") == 0   ? "1.3"
                            : strcmp(opt->ssl_version, "tlsv1_2") == 0 ? "1.2"
                            : strcmp(opt->ssl_version, "default") == 0 ? "1.2"
                                                                       : NULL;
            if (v == NULL) {
                fclose(fp);
                free(text);
                fprintf(stderr,
                        "wsplice: --ssl-version %s: expected tlsv1_2 or tlsv1_3 (older versions are not "
                        "offered)\n",
                        opt->ssl_version);
                exit(EXIT_USAGE);
            }
            fprintf(fp, "tls_min_version = %s\n", v);
        }
    }
    fprintf(fp, "[route:default]\npath = /*\ntarget = %s\n", target);
    if (opt->ssl_target)
        fprintf(fp, "target_tls = yes\n");
    fclose(fp);
    return text;
}

static struct config *
load_config(const struct options *opt)
{
    if (opt->config_path != NULL)
        return config_load_file(opt->config_path);
    char *text = config_text_from_args(opt);
    if (text == NULL)
        return NULL;
    struct config *cfg = config_load_string(text, "command line");
    free(text);
    return cfg;
}

static size_t
effective_max_sessions(const struct config *cfg)
{
    struct rlimit rl;
    size_t by_fds = 0;

    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        rl.rlim_cur > FD_RESERVE + REJECT_HEADROOM + cfg->listener_count)
        by_fds =
            (rl.rlim_cur - FD_RESERVE - REJECT_HEADROOM - cfg->listener_count) / 2; /* client + backend */
    if (cfg->max_sessions != 0)
        return cfg->max_sessions;
    return by_fds;
}

static void
app_apply_config(struct app *app)
{
    worker_group_set_limits(&app->group, effective_max_sessions(app->cfg), REJECT_HEADROOM);
    log_level_current = app->verbose ? LOG_LEVEL_DEBUG : app->cfg->log_level;
}

/* workers = 0: one per core the process may run on. */
static size_t
app_worker_count(const struct config *cfg)
{
    if (cfg->workers != 0)
        return cfg->workers;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (size_t)n : 1;
}

/* Keep large buffers in the heap and freed memory mapped: relay buffers of 64-256 KiB are
 * allocated and freed all the time, and glibc would otherwise mmap them or trim the heap,
 * so that every new buffer page-faults in fresh, zeroed pages. */
static void
main_tune_malloc(void)
{
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
    mallopt(M_TRIM_THRESHOLD, 8 << 20);
}

static void
app_post_all(struct app *app, unsigned commands, struct config *cfg)
{
    for (size_t i = 0; i < app->worker_count; i++)
        worker_post(app->workers[i], commands, cfg);
}

/* A worker's loop has ended (drained, or stopped): the process ends with the last one. */
static void
app_worker_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct app *app = arg;
    uint64_t n = 0;

    (void)what;
    if (read(fd, &n, sizeof n) == -1)
        return;
    app->workers_running = n >= app->workers_running ? 0 : app->workers_running - (size_t)n;
    if (app->workers_running == 0)
        event_base_loopbreak(app->base);
}

static void
signal_stop_cb(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;

    (void)what;
    if (app->draining) {
        log_warn("signal %s again: exiting now", sig == SIGINT ? "INT" : "TERM");
        app_post_all(app, WORKER_STOP, NULL);
        return;
    }
    /* Sessions get close 1001; connections not upgraded (a handshake, a refusal, a web
     * request or an idle keep-alive) get 503 or are closed, and are counted apart. */
    uint_fast64_t open = METRICS_GET(sessions_open), all = METRICS_GET(sessions_current);
    uint_fast64_t others = all > open ? all - open : 0;
    char more[64] = "";
    if (others > 0)
        snprintf(more, sizeof more, " and %" PRIuFAST64 " other connection%s", others,
                 others == 1 ? "" : "s");
    log_info("signal %s: draining %" PRIuFAST64 " sessions%s (at most %ums)", sig == SIGINT ? "INT" : "TERM",
             open, more, app->cfg->drain_timeout_ms);
    app->draining = true;
    app_post_all(app, WORKER_DRAIN, NULL);
}

/* Same listeners (names and addresses, in order)? Listener changes need a restart. */
static bool
listeners_equal(const struct config *a, const struct config *b)
{
    char x[ADDR_STR_MAX], y[ADDR_STR_MAX];

    if (a->listener_count != b->listener_count || a->workers != b->workers)
        return false;
    for (size_t i = 0; i < a->listener_count; i++) {
        if (strcmp(a->listeners[i].head.name, b->listeners[i].head.name) != 0 ||
            strcmp(addr_format(&a->listeners[i].bind, x, sizeof x),
                   addr_format(&b->listeners[i].bind, y, sizeof y)) != 0)
            return false;
    }
    return true;
}

static void
signal_reload_cb(evutil_socket_t sig, short what, void *arg)
{
    struct app *app = arg;
    struct config *next;

    (void)sig;
    (void)what;
    if (app->config_path == NULL) {
        log_warn("signal HUP: nothing to reload (started without -c)");
        return;
    }
    next = config_load_file(app->config_path);
    if (next == NULL || next->error_count > 0) {
        log_error("reload of %s refused; the running configuration stays:", app->config_path);
        for (size_t i = 0; next != NULL && i < next->error_count; i++)
            log_error("reload %s", next->errors[i].text);
        config_free(next);
        return;
    }
    if (!listeners_equal(app->cfg, next)) {
        log_error("reload of %s refused: listener and workers changes need a restart", app->config_path);
        config_free(next);
        return;
    }
    /* Each worker takes it for new connections (worker_post holds a reference for it);
     * sessions keep the route table and TLS contexts they started with. */
    app_post_all(app, WORKER_RELOAD, next);
    config_free(app->cfg);
    app->cfg = next;
    app_apply_config(app);
    log_info("reload of %s done: %zu routes; open sessions keep their routes", app->config_path,
             next->route_count);
}

static void
signal_metrics_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    (void)arg;
    metrics_log_snapshot();
}

int
main(int argc, char **argv)
{
    struct options opt = {0};
    struct app app = {0};
    struct event *sigs[5] = {0};
    int rc = 0;

    parse_args(argc, argv, &opt);
    app.cfg = load_config(&opt);
    if (app.cfg == NULL) {
        fprintf(stderr, "wsplice: out of memory\n");
        return EXIT_RUNTIME;
    }
    if (app.cfg->error_count > 0) {
        config_print_errors(app.cfg, stderr);
        fprintf(stderr, "wsplice: %zu error%s in %s\n", app.cfg->error_count,
                app.cfg->error_count == 1 ? "" : "s", app.cfg->source);
        config_free(app.cfg);
        return EXIT_USAGE;
    }
    if (opt.check_only) {
        if (opt.verbose) {
            config_dump(app.cfg, stdout);
            fflush(stdout); /* before the verdict on stderr, for readers of both */
        }
        fprintf(stderr, "wsplice: %s: configuration ok\n", app.cfg->source);
        config_free(app.cfg);
        return 0;
    }
    app.config_path = opt.config_path;
    app.verbose = opt.verbose;
    app_apply_config(&app);
    signal(SIGPIPE, SIG_IGN);
    main_tune_malloc();
    event_set_log_callback(log_libevent_cb);

    app.base = event_base_new();
    app.done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (app.base == NULL || app.done_fd == -1) {
        log_error("cannot create the event loop");
        if (app.base != NULL)
            event_base_free(app.base);
        config_free(app.cfg);
        return EXIT_RUNTIME;
    }
    app.worker_count = app_worker_count(app.cfg);
    app.workers = calloc(app.worker_count, sizeof *app.workers);
    if (app.workers == NULL)
        rc = EXIT_RUNTIME;
    /* Every worker listens before any starts: a bad bind fails the start, and the first
     * worker's sockets fix the ports (port 0 included) the others share. */
    for (size_t i = 0; rc == 0 && i < app.worker_count; i++) {
        app.workers[i] = worker_new((unsigned)i, &app.group, app.cfg, i > 0 ? app.workers[0] : NULL,
                                    app.worker_count > 1, app.done_fd);
        if (app.workers[i] == NULL)
            rc = EXIT_RUNTIME;
    }
    if (rc == 0) {
        /* libevent restores the disposition it found when its signal events are freed at exit;
         * make that "ignore", so a second TERM during the final cleanup cannot kill us midway. */
        signal(SIGTERM, SIG_IGN);
        signal(SIGINT, SIG_IGN);
        signal(SIGHUP, SIG_IGN);
        signal(SIGUSR1, SIG_IGN);
        sigs[0] = evsignal_new(app.base, SIGTERM, signal_stop_cb, &app);
        sigs[1] = evsignal_new(app.base, SIGINT, signal_stop_cb, &app);
        sigs[2] = evsignal_new(app.base, SIGHUP, signal_reload_cb, &app);
        sigs[3] = evsignal_new(app.base, SIGUSR1, signal_metrics_cb, &app);
        for (size_t i = 0; i < 4; i++)
            if (sigs[i] != NULL)
                event_add(sigs[i], NULL);
        app.done_ev = event_new(app.base, app.done_fd, EV_READ | EV_PERSIST, app_worker_done_cb, &app);
        if (app.done_ev == NULL || event_add(app.done_ev, NULL) == -1)
            rc = EXIT_RUNTIME;
        for (size_t i = 0; rc == 0 && i < app.worker_count; i++) {
            if (worker_start(app.workers[i]) == -1)
                rc = EXIT_RUNTIME;
            else
                app.workers_running++;
        }
    }
    if (rc == 0) {
        log_info("wsplice %s started: %zu listeners, %zu routes, max_sessions=%zu, workers=%zu",
                 WSPLICE_VERSION, app.cfg->listener_count, app.cfg->route_count,
                 (size_t)atomic_load(&app.group.max_sessions), app.worker_count);
        event_base_dispatch(app.base);
        log_info("wsplice stopped");
    } else if (app.workers_running > 0) {
        app_post_all(&app, WORKER_STOP, NULL); /* a thread failed to start: end the others */
    }

    /* Last worker first: the first worker's listeners own the per-IP counts the others use. */
    for (size_t i = app.worker_count; i-- > 0;)
        worker_free(app.workers[i]);
    free(app.workers);
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        if (sigs[i] != NULL)
            event_free(sigs[i]);
    if (app.done_ev != NULL)
        event_free(app.done_ev);
    close(app.done_fd);
    event_base_free(app.base);
    config_free(app.cfg);
    libevent_global_shutdown();
    return rc;
}
