/* Writes the ramdisk test-startinfo expects (see test-startinfo/ramdisk.h). */
#include <stdio.h>
#include "ramdisk.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    for (uint32_t i = 0; i < RAMDISK_SIZE; i++)
        fputc(ramdisk_byte(i), f);
    if (fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
