/* The key table behind cuvae_config (internal to config.c and config_text.c): one row per INI key
 * with its type, place in the struct, allowed range, default (as text, parsed like any value),
 * one-line meaning and what a change of it means for a resume. */
#ifndef CUVAE_CONFIG_KEYS_H
#define CUVAE_CONFIG_KEYS_H

#include <stddef.h>

#include "config.h"

typedef enum {
    CUVAE_KEY_INT,      /* int, [min, max] */
    CUVAE_KEY_U64,      /* uint64_t, any value */
    CUVAE_KEY_FLOAT,    /* float, finite, bounds as the flags say */
    CUVAE_KEY_BOOL,     /* int 0/1 */
    CUVAE_KEY_STRING,   /* char[CUVAE_PATH_LEN] */
    CUVAE_KEY_ENUM,     /* int-sized enum; names[i] is the value i */
    CUVAE_KEY_INT_LIST, /* int[CUVAE_MAX_HIDDEN] plus a count at offset2; entries in [min, max] */
    CUVAE_KEY_LAYERS,   /* cuvae_stack_spec in the notation of cuvae_stack_spec_parse */
} cuvae_key_type;

/* Bound flags: exclusive ends, and "no upper bound" (the text then says ">= min"). */
enum { CUVAE_KEY_MIN_OPEN = 1, CUVAE_KEY_MAX_OPEN = 2, CUVAE_KEY_NO_MAX = 4 };

typedef enum {
    CUVAE_RESUME_FREE,   /* changes nothing the saved state depends on */
    CUVAE_RESUME_EXACT,  /* allowed, but the continuation no longer equals an uninterrupted run */
    CUVAE_RESUME_REFUSE, /* the checkpoint's tensors mean nothing under the new value */
} cuvae_resume_class;

typedef struct {
    const char *section;
    const char *key;
    cuvae_key_type type;
    size_t offset;  /* of the value in cuvae_config */
    size_t offset2; /* INT_LIST: of the count */
    double min, max;
    unsigned flags;
    const char *const *names; /* ENUM: NULL-terminated */
    const char *def;          /* default, as the INI text */
    const char *doc;          /* one line */
    cuvae_resume_class resume;
    const char *refuse_why; /* REFUSE: why the checkpoint cannot continue */
} cuvae_key_spec;

/* Rows in the table (config_keys.c checks it at compile time): sizes per-key state in the parser.
 */
#define CUVAE_CONFIG_N_KEYS 52

extern const cuvae_key_spec *const cuvae_config_keys;
extern const size_t cuvae_config_n_keys;
extern const char *const cuvae_config_sections[];
extern const size_t cuvae_config_n_sections;

/* "integer in [1, 1000000]", "one of adam, adamw", ... (what an error says was expected). */
void cuvae_key_allowed(const cuvae_key_spec *k, char *buf, size_t len);

/* The value of k in c as INI text that parses back to the same bits. */
void cuvae_key_format(const cuvae_key_spec *k, const cuvae_config *c, char *buf, size_t len);

/* Whether k holds the same value in a and b. */
int cuvae_key_equal(const cuvae_key_spec *k, const cuvae_config *a, const cuvae_config *b);

#endif
