/* worker.h - one event loop on its own thread, its listeners and the sessions it runs.
 * `workers = N` starts N of them; each has its own event base and its own SO_REUSEPORT
 * socket per listener, so the kernel spreads new connections and a session lives on one
 * thread from accept to close (its bytes stay in order without locks). They share only
 * the group below, the route tables and TLS contexts (reference-counted), each listener's
 * per-IP counts (under a mutex) and the metrics (atomic). The main thread handles signals
 * and talks to workers through worker_post(). */
#ifndef WSPLICE_WORKER_H
#define WSPLICE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event;
struct event_base;
struct resolver;
struct config;
struct listener;
struct session;

/* What every worker shares: the global connection count and its limits. */
struct worker_group {
    atomic_size_t connections;             /* sessions and refusals in flight, all workers */
    atomic_size_t max_sessions;            /* the effective global limit: more get 503 (0: none) */
    atomic_size_t accept_limit;            /* connections at which workers stop accepting */
    atomic_uint_least64_t next_session_id; /* "s=42" is unique across workers */
};

enum worker_command {
    WORKER_DRAIN = 1 << 0,  /* SIGTERM: stop accepting, close 1001, exit when empty */
    WORKER_STOP = 1 << 1,   /* a second SIGTERM: free every session, exit now */
    WORKER_RELOAD = 1 << 2, /* take worker->next_cfg for new connections */
};

struct worker {
    unsigned index;
    struct worker_group *group;  /* borrowed from main */
    struct event_base *base;     /* owned */
    struct resolver *resolver;   /* owned; created on the first backend name to resolve */
    struct config *cfg;          /* counted reference: the config new sessions start with */
    struct listener **listeners; /* owned, one per [listener:...] */
    size_t listener_count;
    struct session *sessions;   /* owned: every live session, linked through session->next */
    size_t session_count;       /* this worker's share of group->connections */
    bool accept_paused;         /* at accept_limit: new connections wait in the kernel's backlog */
    struct event *accept_check; /* while paused: another worker's sessions may end first */
    bool draining;              /* SIGTERM: no new sessions; stop the loop when empty */
    struct event *drain_timer;
    /* The pipe session.c splices backend data through to clients (worker_splice_pipe):
     * empty whenever no session is using it. */
    int splice_pipe[2];
    bool has_splice_pipe;
    size_t splice_pipe_bytes; /* its capacity */

    /* From the main thread: commands under 'lock', then a write to 'wake_fd'. */
    pthread_mutex_t lock;
    unsigned commands;       /* enum worker_command bits */
    struct config *next_cfg; /* WORKER_RELOAD: a counted reference for us */
    int wake_fd;             /* eventfd */
    struct event *wake_ev;
    int done_fd; /* borrowed: written once when the loop has ended */
    pthread_t thread;
    bool is_started;
};

/* A worker with its own event base, listening on every listener of 'cfg'. For listener i,
 * 'first' (worker 0, or NULL for worker 0 itself) gives the address to share with
 * SO_REUSEPORT ('reuse_port' is set when there is more than one worker). Returns NULL after
 * logging why. */
struct worker *worker_new(unsigned index, struct worker_group *group, struct config *cfg,
                          const struct worker *first, bool reuse_port, int done_fd);

/* Run the worker's loop on a new thread. -1 if the thread could not start. */
int worker_start(struct worker *w);

/* Queue commands (and for WORKER_RELOAD a config the worker takes a reference to) and wake
 * the worker. Any thread. */
void worker_post(struct worker *w, unsigned commands, struct config *cfg);

/* The worker's pipe for splicing backend data to clients (session.c), made by worker_new
 * or, if that failed, on first use; NULL if none can be had now. Empty between uses. */
const int *worker_splice_pipe(struct worker *w);

/* Drop the pipe (it could not be emptied); the next worker_splice_pipe() makes a new one. */
void worker_splice_pipe_reset(struct worker *w);

/* Wait for the thread (after it wrote done_fd), then free everything. */
void worker_free(struct worker *w);

/* Apply the effective session limits to the group (main thread, at start and on reload). */
void worker_group_set_limits(struct worker_group *g, size_t max_sessions, size_t reject_headroom);

/* The worker stopped or resumed accepting on every listener (session.c calls these when
 * the group reaches its accept_limit and when it falls below again). */
void worker_pause_accepting(struct worker *w);
void worker_resume_accepting(struct worker *w);

/* session.c: the last session of a draining worker ended. */
void worker_on_empty(struct worker *w);

#endif
