/* route.c - route table construction, reference counting and lookup. Lookup is a linear
 * scan with a score: route counts are small, and token-based routing gets its own index. */
#include "route.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct route_table {
    atomic_uint refs;
    size_t count, cap;
    struct route *routes;
    atomic_uint *sessions;  /* live sessions per route, for limits.max_sessions */
    struct limits defaults; /* for connections that have no route yet */
    struct route_attachment *attachments;
    size_t attachment_count;
};

struct route_attachment {
    void *object;
    void (*free_fn)(void *object);
};

struct route_table *
route_table_new(void)
{
    struct route_table *t = calloc(1, sizeof *t);

    if (t != NULL)
        atomic_init(&t->refs, 1);
    return t;
}

static char *
route_strdup(const char *s)
{
    size_t len = strlen(s) + 1;
    char *d = malloc(len);

    if (d != NULL)
        memcpy(d, s, len);
    return d;
}

/* Deep-copy a string array; NULL for an empty one. Returns -1 on ENOMEM (nothing kept). */
static int
route_copy_strings(char **src, size_t count, char ***dst)
{
    *dst = NULL;
    if (count == 0)
        return 0;
    char **d = calloc(count, sizeof *d);
    if (d == NULL)
        return -1;
    for (size_t i = 0; i < count; i++) {
        d[i] = route_strdup(src[i]);
        if (d[i] == NULL) {
            while (i-- > 0)
                free(d[i]);
            free(d);
            return -1;
        }
    }
    *dst = d;
    return 0;
}

static void
route_free_strings(char **s, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(s[i]);
    free(s);
}

static void
route_cleanup(struct route *r)
{
    free(r->name);
    free(r->path);
    route_free_strings(r->hosts, r->host_count);
    route_free_strings(r->cert_names, r->cert_name_count);
}

int
route_table_add(struct route_table *table, const struct route *route)
{
    struct route copy = *route;

    if (table->count == table->cap) {
        size_t cap = table->cap ? table->cap * 2 : 8;
        struct route *n = realloc(table->routes, cap * sizeof *n);
        if (n == NULL)
            return -1;
        table->routes = n;
        atomic_uint *c = realloc(table->sessions, cap * sizeof *c);
        if (c == NULL)
            return -1;
        table->sessions = c;
        table->cap = cap;
    }
    copy.name = route_strdup(route->name);
    copy.path = route_strdup(route->path);
    copy.path_len = strlen(route->path);
    if (route_copy_strings(route->hosts, route->host_count, &copy.hosts) == -1)
        copy.host_count = 0;
    if (route_copy_strings(route->cert_names, route->cert_name_count, &copy.cert_names) == -1)
        copy.cert_name_count = 0;
    if (copy.name == NULL || copy.path == NULL || (copy.hosts == NULL && route->host_count > 0) ||
        (copy.cert_names == NULL && route->cert_name_count > 0)) {
        route_cleanup(&copy);
        return -1;
    }
    atomic_init(&table->sessions[table->count], 0);
    table->routes[table->count++] = copy;
    return 0;
}

int
route_table_attach(struct route_table *table, void *object, void (*free_fn)(void *object))
{
    struct route_attachment *n = realloc(table->attachments, (table->attachment_count + 1) * sizeof *n);

    if (n == NULL)
        return -1;
    table->attachments = n;
    n[table->attachment_count].object = object;
    n[table->attachment_count].free_fn = free_fn;
    table->attachment_count++;
    return 0;
}

void
route_table_ref(struct route_table *table)
{
    atomic_fetch_add_explicit(&table->refs, 1, memory_order_relaxed);
}

void
route_table_unref(struct route_table *table)
{
    if (table == NULL)
        return;
    if (atomic_fetch_sub_explicit(&table->refs, 1, memory_order_acq_rel) != 1)
        return;
    for (size_t i = 0; i < table->count; i++)
        route_cleanup(&table->routes[i]);
    free(table->routes);
    free(table->sessions);
    for (size_t i = 0; i < table->attachment_count; i++)
        table->attachments[i].free_fn(table->attachments[i].object);
    free(table->attachments);
    free(table);
}

void
route_table_set_defaults(struct route_table *table, const struct limits *defaults)
{
    table->defaults = *defaults;
}

const struct limits *
route_table_defaults(const struct route_table *table)
{
    return &table->defaults;
}

size_t
route_table_count(const struct route_table *table)
{
    return table->count;
}

const struct route *
route_table_get(const struct route_table *table, size_t index)
{
    return index < table->count ? &table->routes[index] : NULL;
}

size_t
route_normalize_host(const char *host, size_t host_len, char *out, size_t out_size)
{
    size_t start = 0, end = host_len;

    if (host == NULL || host_len == 0)
        return 0;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', host_len);
        if (close == NULL)
            return 0;
        start = 1;
        end = (size_t)(close - host);
    } else {
        const char *colon = memchr(host, ':', host_len);
        if (colon != NULL)
            end = (size_t)(colon - host);
    }
    if (end > start && host[end - 1] == '.')
        end--;
    if (end <= start || end - start >= out_size)
        return 0;
    for (size_t i = start; i < end; i++) {
        char c = host[i];
        out[i - start] = (c >= 'A' && c <= 'Z') ? (char)(c - 'A' + 'a') : c;
    }
    out[end - start] = '\0';
    return end - start;
}

bool
route_host_matches(const char *pattern, const char *host, size_t host_len)
{
    size_t plen = strlen(pattern);

    if (plen >= 2 && pattern[0] == '*' && pattern[1] == '.') {
        /* "*.example.com" matches "a.example.com" and "a.b.example.com", not "example.com". */
        size_t suffix = plen - 1; /* ".example.com" */
        return host_len > suffix && memcmp(host + host_len - suffix, pattern + 1, suffix) == 0;
    }
    return plen == host_len && memcmp(pattern, host, host_len) == 0;
}

/* Higher is more specific; 0 means no match. */
static size_t
route_score(const struct route *r, unsigned listener_index, const char *host, size_t host_len,
            const char *path, size_t path_len)
{
    size_t score = 1;

    if (listener_index >= ROUTE_MAX_LISTENERS || !(r->listener_mask & (UINT64_C(1) << listener_index)))
        return 0;
    if (r->host_count > 0) {
        size_t best = 0;
        for (size_t i = 0; i < r->host_count; i++) {
            if (host_len == 0 || !route_host_matches(r->hosts[i], host, host_len))
                continue;
            size_t h = r->hosts[i][0] == '*' ? 1 : 2; /* an exact name beats a wildcard */
            if (h > best)
                best = h;
        }
        if (best == 0)
            return 0;
        score += best << 40;
    }
    if (r->is_prefix) {
        if (path_len < r->path_len || memcmp(path, r->path, r->path_len) != 0)
            return 0;
        score += r->path_len;
    } else {
        if (path_len != r->path_len || memcmp(path, r->path, path_len) != 0)
            return 0;
        score += (size_t)1 << 32;
    }
    return score;
}

const struct route *
route_lookup(const struct route_table *table, unsigned listener_index, const char *host, size_t host_len,
             const char *path, size_t path_len)
{
    char name[ADDR_HOST_MAX + 1];
    size_t name_len = route_normalize_host(host, host_len, name, sizeof name);
    const struct route *best = NULL;
    size_t best_score = 0;

    for (size_t i = 0; i < table->count; i++) {
        size_t s = route_score(&table->routes[i], listener_index, name, name_len, path, path_len);
        if (s > best_score) {
            best = &table->routes[i];
            best_score = s;
        }
    }
    return best;
}

bool
route_session_acquire(struct route_table *table, const struct route *route)
{
    atomic_uint *n = &table->sessions[route - table->routes];
    unsigned max = route->limits.max_sessions;
    unsigned cur = atomic_load_explicit(n, memory_order_relaxed);

    do {
        if (max != 0 && cur >= max)
            return false;
    } while (
        !atomic_compare_exchange_weak_explicit(n, &cur, cur + 1, memory_order_relaxed, memory_order_relaxed));
    return true;
}

void
route_session_release(struct route_table *table, const struct route *route)
{
    atomic_fetch_sub_explicit(&table->sessions[route - table->routes], 1, memory_order_relaxed);
}

unsigned
route_session_count(const struct route_table *table, const struct route *route)
{
    return atomic_load_explicit(&table->sessions[route - table->routes], memory_order_relaxed);
}
