#pragma once
#include <stddef.h>
#include <stdint.h>

/// libFuzzer's driver when the binary is linked with it (`-sanitize=fuzzer`): runs `callback`
/// on generated inputs with libFuzzer's command line, and returns its exit status. Returns -1
/// when libFuzzer is not linked in (a plain build), so the caller replays files instead.
int dnsfence_fuzz_driver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
