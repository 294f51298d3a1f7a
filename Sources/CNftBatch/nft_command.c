#define _GNU_SOURCE
#include "nft_command.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <nftables/libnftables.h>

struct nft_job {
    const char *command;
    char *output;
    char *error;
    int result;
};

static char *copy_text(const char *text) { return text != NULL && text[0] != '\0' ? strdup(text) : NULL; }

static void *run_job(void *argument) {
    struct nft_job *job = argument;
    // A descriptor table of the thread's own holding only stdio: CLOSE_RANGE_UNSHARE copies
    // just the numbers below 3, however many the process has open (Linux 5.9). Older kernels:
    // a whole copy, then the low numbers given back in it (the rest go when the thread ends).
    if (close_range(3, ~0U, CLOSE_RANGE_UNSHARE) != 0) {
        if (unshare(CLONE_FILES) != 0) {
            job->result = -errno;
            return NULL;
        }
        for (int fd = 3; fd < 1024; fd++) close(fd);
    }
    struct nft_ctx *ctx = nft_ctx_new(0);
    if (ctx == NULL) {
        job->result = -ENOMEM;
        return NULL;
    }
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    job->result = nft_run_cmd_from_buffer(ctx, job->command) == 0 ? 0 : 1;
    job->output = copy_text(nft_ctx_get_output_buffer(ctx));
    job->error = copy_text(nft_ctx_get_error_buffer(ctx));
    nft_ctx_free(ctx);
    return NULL;
}

int dnsfence_nft_command(const char *command, char **output, char **error) {
    struct nft_job job = {.command = command};
    pthread_t thread;
    // A new thread starts in its creator's network namespace: the caller's.
    int rc = pthread_create(&thread, NULL, run_job, &job);
    if (rc != 0) return -rc;
    pthread_join(thread, NULL);
    *output = job.output;
    *error = job.error;
    if (job.result < 0) {
        free(job.output);
        free(job.error);
        *output = *error = NULL;
    }
    return job.result;
}
