/* fuzz_config.c - whole config files through inih, the line reader and validation:
 * any text must load or produce errors, never crash or leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0'; /* the reader stops at the first NUL, as a file read would not */
    struct config *cfg = config_load_string(text, "fuzz.ini");
    if (cfg != NULL) {
        if (cfg->error_count == 0 && cfg->routes == NULL)
            abort();
        for (size_t i = 0; i < cfg->error_count; i++)
            if (strncmp(cfg->errors[i].text, "fuzz.ini", 8) != 0)
                abort();
        config_free(cfg);
    }
    free(text);
    return 0;
}
