/*
 * fm_error.h - what the run library's calls return.
 *
 * FM_OK, or FM_EUSAGE when the configuration itself is wrong (a value out of
 * range, an unknown name: what a user fixes on the command line), or
 * FM_EFAIL when an input or operation failed (a file that cannot be read, a
 * database that cannot be written). Every failing call also writes one
 * sentence naming the file, key or value at fault into the caller's buffer.
 * The values are the CLI's exit codes (2 for a bad command line, 1 for a
 * failure). Owned by the run library authors.
 */
#ifndef FLEXMOE_RUN_FM_ERROR_H
#define FLEXMOE_RUN_FM_ERROR_H

enum { FM_OK = 0, FM_EFAIL = 1, FM_EUSAGE = 2 };

#endif
