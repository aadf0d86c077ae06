/* What a resumed run takes back from the run's metrics.jsonl (see metrics.h). Apart from
 * metrics.c, whose JSON writer's names would clash with jansson's. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "metrics.h"

double cuvae_metrics_wall_at(const char *run_dir, uint64_t step)
{
    char path[CUVAE_PATH_LEN + 64];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    FILE *f = fopen(path, "r");
    if (!f) return 0.0;
    double at_checkpoint = -1.0, before = 0.0;
    char line[4096];
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        if (n == sizeof line - 1 && line[n - 1] != '\n') {
            /* Longer than any record cuvae writes: skip the rest of it. */
            int c;
            while ((c = fgetc(f)) != EOF && c != '\n') {
            }
            continue;
        }
        json_t *r = json_loads(line, 0, NULL);
        const json_t *s = json_object_get(r, "step"), *w = json_object_get(r, "wall_s");
        const char *type = json_string_value(json_object_get(r, "type"));
        if (json_is_integer(s) && json_integer_value(s) >= 0 && json_is_number(w) && type) {
            uint64_t at = (uint64_t)json_integer_value(s);
            double wall = json_number_value(w);
            if (isfinite(wall) && wall >= 0) {
                if (at == step && strcmp(type, "checkpoint") == 0) at_checkpoint = wall;
                if (at <= step) before = wall;
            }
        }
        json_decref(r);
    }
    fclose(f);
    return at_checkpoint >= 0 ? at_checkpoint : before;
}
