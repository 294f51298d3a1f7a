#ifndef DNSFENCE_CCORE_H
#define DNSFENCE_CCORE_H

/// Names the calling thread (Linux keeps the first 15 bytes).
void dnsfence_set_thread_name(const char *name);

#endif
