/*
 * The deterministic ramdisk that test-startinfo expects as module 0.
 * Shared by the host generator (tools/mkramdisk.c) and the guest.
 */
#ifndef RAMDISK_H
#define RAMDISK_H

#include <stdint.h>

/* Deliberately not a multiple of the page size. */
#define RAMDISK_SIZE 5000u
/* The first 16 bytes are this text; the rest is a fixed pseudo-random pattern. */
#define RAMDISK_MAGIC "pyxen ramdisk v1"

static inline uint8_t ramdisk_byte(uint32_t i)
{
    static const char magic[] = RAMDISK_MAGIC;
    if (i < sizeof(magic) - 1)
        return (uint8_t)magic[i];
    uint32_t x = i * 2654435761u;
    x ^= x >> 15;
    return (uint8_t)(x ^ (x >> 8));
}

/* FNV-1a, 32-bit: printed by the guest so a harness can compare files. */
static inline uint32_t fnv1a32(const volatile uint8_t *p, uint32_t len)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}

#endif
