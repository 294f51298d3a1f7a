#include "fuzz_driver.h"

/* Weak: present only when libFuzzer's runtime is linked in. The program has a main of its
   own, so the runtime's main (a separate member of its archive) is never pulled in. */
extern int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size))
    __attribute__((weak));

int dnsfence_fuzz_driver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size)) {
    if (!LLVMFuzzerRunDriver) return -1;
    return LLVMFuzzerRunDriver(argc, argv, callback);
}
