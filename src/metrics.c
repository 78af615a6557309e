/* metrics.c - counter storage and the snapshot log line. The Prometheus endpoint will
 * read the same struct. */
#include "metrics.h"

#include <inttypes.h>

#include "log.h"

struct metrics metrics;

void
metrics_log_snapshot(void)
{
    log_info("metrics sessions_current=%" PRIuFAST64 " sessions_open=%" PRIuFAST64
             " sessions_total=%" PRIuFAST64 " upgrades_total=%" PRIuFAST64 " handshakes_rejected=%" PRIuFAST64
             " backend_connect_failures=%" PRIuFAST64 " protocol_errors=%" PRIuFAST64 " bytes_up=%" PRIuFAST64
             " bytes_down=%" PRIuFAST64 " bytes_down_spliced=%" PRIuFAST64 " web_requests=%" PRIuFAST64
             " web_bytes=%" PRIuFAST64,
             (uint_fast64_t)METRICS_GET(sessions_current), (uint_fast64_t)METRICS_GET(sessions_open),
             (uint_fast64_t)METRICS_GET(sessions_total), (uint_fast64_t)METRICS_GET(upgrades_total),
             (uint_fast64_t)METRICS_GET(handshakes_rejected),
             (uint_fast64_t)METRICS_GET(backend_connect_failures),
             (uint_fast64_t)METRICS_GET(protocol_errors), (uint_fast64_t)METRICS_GET(bytes_up),
             (uint_fast64_t)METRICS_GET(bytes_down), (uint_fast64_t)METRICS_GET(bytes_down_spliced),
             (uint_fast64_t)METRICS_GET(web_requests), (uint_fast64_t)METRICS_GET(web_bytes));
}
