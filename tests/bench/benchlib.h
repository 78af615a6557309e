/* benchlib.h - what the benchmark tools (loadgen, backend, relay) share: the payload
 * pattern both ends agree on, the monotonic clock, and socket setup. Not a general
 * library: only what these three programs need. */
#ifndef BENCHLIB_H
#define BENCHLIB_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The payload of every stream is a fixed pseudo-random sequence with this period, so byte
 * N of a connection is pattern[N % PATTERN_PERIOD]. A power of two, so any power-of-two
 * frame size divides it and a stream of such frames repeats exactly every period. */
#define PATTERN_PERIOD ((size_t)1 << 20)
/* pattern_at() is contiguous for at least this many bytes. */
#define PATTERN_SLACK ((size_t)1 << 20)

/* Build the pattern (idempotent). Every process computes the same bytes. */
void pattern_init(void);

/* The pattern from stream offset 'offset'; valid for PATTERN_SLACK bytes. */
const uint8_t *pattern_at(uint64_t offset);

/* Compare 'len' received bytes with the pattern at 'offset'. Returns how many bytes
 * differ (0 when the stream is intact). */
uint64_t pattern_check(uint64_t offset, const uint8_t *buf, size_t len);

/* CLOCK_MONOTONIC in nanoseconds: comparable between processes on one machine. */
uint64_t now_ns(void);

/* Parse "host:port" (IPv4 literal) into a sockaddr_in. Returns 0 or -1. */
int addr_parse(const char *text, struct sockaddr_in *out);

/* A non-blocking listening socket on 'addr' (port 0 picks one). Returns the fd and
 * writes the bound port to *port, or -1 after printing why. */
int listen_on(const struct sockaddr_in *addr, int backlog, uint16_t *port);

/* Start a non-blocking connect. Returns the fd (connect in progress or done) or -1 with
 * errno set. */
int connect_start(const struct sockaddr_in *addr);

/* Small socket chores; errors are ignored, as they only cost speed. */
void set_nodelay(int fd);
void set_nonblock(int fd);

/* Exit with status 2 and a message (command-line misuse). */
void usage_error(const char *prog, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));

/* Parse a size such as "64k", "1M" or "1500". Returns 0 on success. */
int size_parse(const char *text, uint64_t *out);

#endif
