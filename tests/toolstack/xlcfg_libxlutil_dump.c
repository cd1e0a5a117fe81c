/*
 * Print what Xen's libxlutil makes of xl config files, one JSON object per file, so that
 * pyxen's xl.cfg parser can be checked against the real one.
 *
 *   xlcfg_libxlutil_dump [--no-values] DISPLAYNAME FILE...
 *
 * Each file is read whole and handed to xlu_cfg_readdata, as xl does.  Output per file:
 *   rc           what xlu_cfg_readdata returned
 *   report       what libxlutil printed while parsing (hex)
 *   settings     every assignment, oldest first: name, line, op (0 "=", 1 "+="), value
 *   keys         per key, what xlu_cfg_get_string / _get_long / _get_list return and print
 * Strings are hex-encoded so that any byte survives.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libxlutil.h>

/*
 * libxlutil keeps the assignments in a private singly linked list, newest first; the public
 * API can only look keys up.  These mirror the private layout of libxlutil 4.17
 * (libxlu_internal.h) so the test can see every assignment, in order.
 */
struct setting_view {
    struct setting_view *next;
    char *name;
    XLU_ConfigValue *value;
    enum XLU_Operation op;
    int lineno;
};
struct config_view {
    struct setting_view *settings;
};

static void put_hex(const char *s, size_t len)
{
    putchar('"');
    for (size_t i = 0; i < len; i++)
        printf("%02x", (unsigned char)s[i]);
    putchar('"');
}

static void put_hex_string(const char *s)
{
    put_hex(s, strlen(s));
}

static void put_value(XLU_Config *cfg, XLU_ConfigValue *value, int with_values)
{
    if (xlu_cfg_value_type(value) == XLU_STRING) {
        char *s;
        xlu_cfg_value_get_string(cfg, value, &s, 1);
        printf("{\"s\":");
        put_hex_string(with_values ? s : "");
        printf("}");
        return;
    }
    XLU_ConfigList *list;
    XLU_ConfigValue *item;
    xlu_cfg_value_get_list(cfg, value, &list, 1);
    printf("{\"l\":[");
    for (int i = 0; with_values && (item = xlu_cfg_get_listitem2(list, i)); i++) {
        if (i)
            putchar(',');
        put_value(cfg, item, with_values);
    }
    printf("]}");
}

static char data[1 << 22];

static void dump_file(const char *path, const char *display_name, int with_values)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(2);
    }
    size_t len = fread(data, 1, sizeof(data), f);
    fclose(f);

    char *report_buf = NULL;
    size_t report_len = 0;
    FILE *report = open_memstream(&report_buf, &report_len);
    XLU_Config *cfg = xlu_cfg_init(report, display_name);
    int rc = xlu_cfg_readdata(cfg, data, (int)len);
    fflush(report);
    printf("{\"rc\":%d,\"report\":", rc);
    put_hex(report_buf, report_len);
    printf(",\"settings\":[");

    int n = 0;
    struct setting_view **all = NULL;
    if (rc == 0) {
        struct setting_view *s;
        for (s = ((struct config_view *)cfg)->settings; s; s = s->next)
            n++;
        all = calloc(n + 1, sizeof(*all));
        int i = n;
        for (s = ((struct config_view *)cfg)->settings; s; s = s->next)
            all[--i] = s;
    }
    for (int i = 0; i < n; i++) {
        if (i)
            putchar(',');
        printf("{\"name\":");
        put_hex_string(all[i]->name);
        printf(",\"line\":%d,\"op\":%d,\"value\":", all[i]->lineno, (int)all[i]->op);
        put_value(cfg, all[i]->value, with_values);
        printf("}");
    }
    printf("],\"keys\":{");
    int first = 1;
    for (int i = 0; i < n; i++) {
        int later = 0;
        for (int j = i + 1; j < n; j++)
            if (!strcmp(all[j]->name, all[i]->name))
                later = 1;
        if (later)
            continue; /* one entry per key, at its newest assignment */
        if (!first)
            putchar(',');
        first = 0;
        const char *name = all[i]->name;
        put_hex_string(name);
        long before = (long)report_len;
        const char *string = NULL;
        long number = 0;
        int entries = 0;
        int string_rc = xlu_cfg_get_string(cfg, name, &string, 0);
        int long_rc = xlu_cfg_get_long(cfg, name, &number, 0);
        int list_rc = xlu_cfg_get_list(cfg, name, NULL, &entries, 0);
        fflush(report);
        printf(":{\"string\":[%d,", string_rc);
        put_hex_string(string_rc ? "" : string);
        printf("],\"long\":[%d,\"%ld\"],\"list\":[%d,%d],\"report\":",
               long_rc, long_rc ? 0 : number, list_rc, entries);
        put_hex(report_buf + before, report_len - before);
        printf("}");
    }
    printf("}}\n");
    free(all);
    xlu_cfg_destroy(cfg);
    fclose(report);
    free(report_buf);
}

int main(int argc, char **argv)
{
    int with_values = 1;
    int arg = 1;
    if (arg < argc && !strcmp(argv[arg], "--no-values")) {
        with_values = 0;
        arg++;
    }
    if (argc - arg < 1) {
        fprintf(stderr, "usage: %s [--no-values] DISPLAYNAME FILE...\n", argv[0]);
        return 2;
    }
    const char *display_name = argv[arg++];
    for (; arg < argc; arg++)
        dump_file(argv[arg], display_name, with_values);
    return 0;
}
