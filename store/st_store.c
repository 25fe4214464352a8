/*
 * st_store.c - the SQLite results store: open/identify/migrate, run writer,
 * traces, profiles, validations and the queries behind `flexmoe report`.
 *
 * Opening is careful about the file it is given, because a results database
 * is often passed by hand (--db FILE):
 *   1. the path is checked with stat(): a missing file is an error for
 *      ST_READ; for ST_WRITE the file (when it exists) and its directory must
 *      be writable (WAL creates FILE-wal and FILE-shm next to it). A file or
 *      directory without any write permission bit counts as read-only even
 *      for root, who could otherwise write anyway: the user made it
 *      read-only on purpose.
 *   2. the first 16 bytes must be the SQLite header (an empty file is a new
 *      database);
 *   3. a read-only connection reads application_id, user_version and whether
 *      any table exists: another application's database, or a schema newer
 *      than ST_SCHEMA_VERSION, is refused before anything is written;
 *   4. only then is the file opened for writing, WAL mode set and the
 *      migration steps run, each inside one IMMEDIATE transaction that
 *      re-reads user_version (two processes opening a new file at once
 *      migrate it once); a current schema takes no lock at all.
 * Reading (steps 3 and ST_READ) opens a database without a -wal file as
 * immutable: no side files, no locks, so read-only files and directories
 * work and nothing is left behind (open_reader, changed_under_us).
 *
 * Errors: every failed SQLite call is recorded on the st_db (failed()) as an
 * ST_ code and a sentence that names the cause: a full disk or the file size
 * limit (ST_EFULL), a lock held by another process (ST_EBUSY, after the busy
 * timeout), an I/O error, corruption. The rollback that follows never
 * overwrites it.
 *
 * One complete run per configuration (schema 3): st_run_begin claims the
 * config_key inside its transaction (supersede the stored run, or refuse
 * with ST_EEXISTS), and a partial unique index backs the claim.
 *
 * Writing a run: st_run_begin starts an IMMEDIATE transaction (the write
 * lock is taken up front, waiting up to the busy timeout), inserts the run
 * row, and every later row goes through a cached prepared statement; commit
 * ends the transaction, abort or st_close rolls it back. A process that dies
 * mid-run leaves only uncommitted WAL frames, which SQLite ignores: the run is
 * simply absent. At most one run is open per connection.
 */
#include "store/st_store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <math.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 30000

/* Cached statements, prepared on first use. */
enum {
  Q_RUN_INSERT,
  Q_ITER_INSERT,
  Q_PLAN_INSERT,
  Q_GPU_INSERT,
  Q_LAYER_INSERT,
  Q_TRACE_FIND,
  Q_TRACE_INSERT,
  Q_CLUSTER_FIND,
  Q_CLUSTER_INSERT,
  Q_RUN_EXISTS,
  Q_LOAD_INSERT,
  Q_RUN_SUPERSEDE,
  NQ
};

static const char *const query_sql[NQ] = {
    [Q_RUN_INSERT] =
        "INSERT INTO runs(kind, trace_id, cluster_id, policy, engine, "
        "params_json, gpus, seed, rng, code_version, started, finished, status, "
        "config_key) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_ITER_INSERT] =
        "INSERT INTO iterations(run_id, iteration, time_ms, compute_ms, "
        "alltoall_ms, allreduce_ms, migration_ms, other_ms, balance, "
        "bytes_alltoall, bytes_migrated, tokens_dropped, tokens_total) "
        "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
    [Q_PLAN_INSERT] = "INSERT INTO plans(run_id, iteration, layer, nmoves, "
                      "bytes, moves_json) VALUES(?,?,?,?,?,?)",
    [Q_GPU_INSERT] =
        "INSERT INTO gpu_stats(run_id, gpu, busy_ms, idle_ms) VALUES(?,?,?,?)",
    [Q_LAYER_INSERT] = "INSERT INTO layer_iterations(run_id, iteration, layer, "
                       "balance, time_ms) VALUES(?,?,?,?,?)",
    [Q_TRACE_FIND] = "SELECT id FROM traces WHERE path = ? AND hash = ?",
    [Q_TRACE_INSERT] = "INSERT INTO traces(path, hash, iterations, layers, "
                       "ranks, experts, meta_json) VALUES(?,?,?,?,?,?,?)",
    [Q_CLUSTER_FIND] =
        "SELECT id FROM clusters WHERE name = ? AND json IS ? AND gpus = ?",
    [Q_CLUSTER_INSERT] =
        "INSERT INTO clusters(name, gpus, json) VALUES(?,?,?)",
    [Q_RUN_EXISTS] = "SELECT 1 FROM runs WHERE config_key = ? AND status = "
                     "'complete' LIMIT 1",
    [Q_LOAD_INSERT] = "INSERT INTO trace_loads(trace_id, iteration, layer, "
                      "expert, tokens) VALUES(?,?,?,?,?)",
    [Q_RUN_SUPERSEDE] = "UPDATE runs SET status = 'superseded' WHERE "
                        "config_key = ? AND status = 'complete'",
};

struct st_db {
  sqlite3 *h;
  int mode;
  int version;
  int busy_ms; /* the busy timeout, for the "locked" message */
  char *path;  /* as given to st_open, for messages */
  int on_duplicate;  /* ST_DUP_SUPERSEDE or ST_DUP_KEEP (st_run_begin) */
  char notice[256];  /* what opening did that the user should know */
  int immutable;     /* read through immutable=1 (open_reader) */
  struct stat ident; /* the file when it was opened immutable */
  st_run *open_run;
  sqlite3_stmt *q[NQ];
  int code;      /* ST_ code of the last failure (failed()), ST_OK if none */
  char msg[1024]; /* its sentence, for st_errmsg */
};

struct st_run {
  st_db *db;
  int64_t id;
};

/* ---- migrations: step N takes user_version N-1 to N ---- */

static const char schema_v1[] =
    "CREATE TABLE traces("
    "  id INTEGER PRIMARY KEY,"
    "  path TEXT NOT NULL,"
    "  hash TEXT NOT NULL,"
    "  iterations INTEGER NOT NULL,"
    "  layers INTEGER NOT NULL,"
    "  ranks INTEGER NOT NULL,"
    "  experts INTEGER NOT NULL,"
    "  meta_json TEXT,"
    "  UNIQUE(path, hash));"
    "CREATE TABLE clusters("
    "  id INTEGER PRIMARY KEY,"
    "  name TEXT NOT NULL,"
    "  gpus INTEGER NOT NULL,"
    "  json TEXT);"
    "CREATE INDEX clusters_name ON clusters(name);"
    "CREATE TABLE profiles("
    "  name TEXT PRIMARY KEY,"
    "  json TEXT NOT NULL,"
    "  created REAL NOT NULL);"
    "CREATE TABLE runs("
    "  id INTEGER PRIMARY KEY,"
    "  kind TEXT NOT NULL CHECK(kind IN ('sim', 'gpu')),"
    "  trace_id INTEGER REFERENCES traces(id),"
    "  cluster_id INTEGER REFERENCES clusters(id),"
    "  policy TEXT NOT NULL,"
    "  engine TEXT,"
    "  params_json TEXT,"
    "  gpus INTEGER NOT NULL,"
    "  seed INTEGER NOT NULL,"
    "  rng TEXT,"
    "  code_version TEXT,"
    "  started REAL,"
    "  finished REAL,"
    "  status TEXT NOT NULL,"
    "  config_key TEXT);"
    "CREATE INDEX runs_config_key ON runs(config_key);"
    "CREATE TABLE iterations("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  iteration INTEGER NOT NULL,"
    "  time_ms REAL, compute_ms REAL, alltoall_ms REAL, allreduce_ms REAL,"
    "  migration_ms REAL, other_ms REAL,"
    "  balance REAL,"
    "  bytes_alltoall INTEGER, bytes_migrated INTEGER,"
    "  tokens_dropped INTEGER, tokens_total INTEGER,"
    "  PRIMARY KEY(run_id, iteration)) WITHOUT ROWID;"
    "CREATE TABLE gpu_stats("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  gpu INTEGER NOT NULL,"
    "  busy_ms REAL, idle_ms REAL,"
    "  PRIMARY KEY(run_id, gpu)) WITHOUT ROWID;"
    "CREATE TABLE plans("
    "  id INTEGER PRIMARY KEY,"
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  iteration INTEGER NOT NULL,"
    "  layer INTEGER NOT NULL,"
    "  nmoves INTEGER NOT NULL,"
    "  bytes INTEGER NOT NULL,"
    "  moves_json TEXT);"
    "CREATE INDEX plans_run ON plans(run_id, iteration, layer);"
    "CREATE TABLE validations("
    "  id INTEGER PRIMARY KEY,"
    "  predicted_run INTEGER NOT NULL REFERENCES runs(id),"
    "  measured_run INTEGER NOT NULL REFERENCES runs(id),"
    "  err_time REAL, err_compute REAL, err_alltoall REAL, err_allreduce REAL,"
    "  err_migration REAL, err_other REAL,"
    "  detail_json TEXT);";

static const char schema_v2[] =
    "CREATE TABLE trace_loads("
    "  trace_id INTEGER NOT NULL REFERENCES traces(id) ON DELETE CASCADE,"
    "  iteration INTEGER NOT NULL,"
    "  layer INTEGER NOT NULL,"
    "  expert INTEGER NOT NULL,"
    "  tokens INTEGER NOT NULL,"
    "  PRIMARY KEY(trace_id, iteration, layer, expert)) WITHOUT ROWID;"
    "CREATE TABLE layer_iterations("
    "  run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,"
    "  iteration INTEGER NOT NULL,"
    "  layer INTEGER NOT NULL,"
    "  balance REAL, time_ms REAL,"
    "  PRIMARY KEY(run_id, iteration, layer)) WITHOUT ROWID;";

/* Version 3: one complete run per configuration. Before it, nothing stopped
 * two sweeps started together on one database from both storing every point
 * (each checked the key, computed, and inserted). Existing duplicates keep
 * their latest complete run, the one `flexmoe report` already counted, and
 * the earlier ones become 'superseded' (kept, not deleted: validations may
 * point at them); st_open says how many (st_notice). The partial unique index
 * then makes a second complete run of a configuration impossible, whatever
 * the writer; st_run_begin checks first, inside its IMMEDIATE transaction. */
#define V3_DUPLICATES                                                          \
  "FROM runs WHERE status = 'complete' AND config_key <> '' AND id NOT IN "   \
  "(SELECT max(id) FROM runs WHERE status = 'complete' AND config_key <> '' " \
  "GROUP BY config_key)"
static const char schema_v3[] =
    "UPDATE runs SET status = 'superseded' WHERE id IN (SELECT id " V3_DUPLICATES
    ");"
    "CREATE UNIQUE INDEX runs_complete_config ON runs(config_key) "
    "WHERE status = 'complete' AND config_key <> '';";

typedef struct st_migration {
  int version; /* user_version after this step */
  const char *sql;
} st_migration;

static const st_migration migrations[] = {
    {1, schema_v1},
    {2, schema_v2},
    {3, schema_v3},
};
#define NMIGRATIONS ((int)(sizeof(migrations) / sizeof(migrations[0])))
_Static_assert(sizeof(migrations) / sizeof(migrations[0]) == ST_SCHEMA_VERSION,
               "one migration step per schema version");

const char *st_migration_sql(int version) {
  for (int i = 0; i < NMIGRATIONS; i++)
    if (migrations[i].version == version)
      return migrations[i].sql;
  return NULL;
}

/* ---- helpers ---- */

static void say(char *errmsg, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void say(char *errmsg, size_t errlen, const char *fmt, ...) {
  if (!errmsg || !errlen)
    return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(errmsg, errlen, fmt, ap);
  va_end(ap);
}

static int map_rc(int rc) {
  switch (rc & 0xff) {
  case SQLITE_OK:
  case SQLITE_DONE:
  case SQLITE_ROW:
    return ST_OK;
  case SQLITE_NOMEM:
    return ST_ENOMEM;
  case SQLITE_BUSY:
  case SQLITE_LOCKED:
    return ST_EBUSY;
  case SQLITE_READONLY:
    return ST_EREADONLY;
  case SQLITE_NOTADB:
    return ST_ENOTDB;
  case SQLITE_CANTOPEN:
    return ST_EOPEN;
  case SQLITE_FULL:
    return ST_EFULL;
  case SQLITE_IOERR:
    return ST_EIO;
  case SQLITE_CORRUPT:
    return ST_ECORRUPT;
  default:
    return ST_ESQL;
  }
}

/* Why a write of the database at path failed with an I/O error: its file
 * system is full, or one of its files (the database, -wal, -journal) has
 * reached the process's file size limit (RLIMIT_FSIZE, `ulimit -f`: with
 * SIGXFSZ ignored the write fails with EFBIG). SQLite says SQLITE_FULL only
 * for ENOSPC and short writes, and the errno it keeps is not reliable once
 * it has cleaned up, so the file system is asked. Returns ST_EFULL with a
 * sentence in why, or ST_EIO. */
static void dir_of(const char *path, char *buf, size_t len);
static int diagnose_io(const char *path, char *why, size_t len) {
  if (!path)
    return ST_EIO;
  struct rlimit rl;
  if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    static const char *const ext[] = {"", "-wal", "-journal"};
    for (size_t i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
      char f[4200];
      struct stat st;
      snprintf(f, sizeof(f), "%s%s", path, ext[i]);
      /* a failed write is at most a page (64 KiB) and a WAL frame header */
      if (stat(f, &st) == 0 && (unsigned long long)st.st_size + 65536 + 24 >
                                   (unsigned long long)rl.rlim_cur) {
        snprintf(why, len,
                 "%.300s%s reached the file size limit of %llu bytes "
                 "(ulimit -f)",
                 path, ext[i], (unsigned long long)rl.rlim_cur);
        return ST_EFULL;
      }
    }
  }
  char dir[4096];
  struct statfs vs;
  dir_of(path, dir, sizeof(dir));
  if (statfs(dir, &vs) == 0 &&
      (unsigned long long)vs.f_bavail * (unsigned long long)vs.f_bsize <
          65536 + 24) {
    snprintf(why, len, "no space left on the file system holding %s", path);
    return ST_EFULL;
  }
  return ST_EIO;
}

/* Records a failed SQLite call on db and returns its ST_ code: st_errmsg
 * gives the sentence until the next failure. The ROLLBACK that follows a
 * failure goes through rollback(), which records nothing, so the caller sees
 * the cause (say "disk full"), not the rollback's own complaint ("cannot
 * rollback - no transaction is active", which is what SQLite says after it
 * rolled back by itself). */
static int failed(st_db *db, int rc) {
  int st = map_rc(rc);
  if (st == ST_OK)
    return ST_OK;
  char why[512] = "";
  if (st == ST_EIO || st == ST_EFULL) {
    int e = sqlite3_system_errno(db->h);
    if (e == ENOSPC || e == EDQUOT || e == EFBIG)
      snprintf(why, sizeof(why), "%s", strerror(e));
    else
      diagnose_io(db->path, why, sizeof(why));
    if (why[0])
      st = ST_EFULL;
  }
  if (st == ST_EBUSY)
    snprintf(db->msg, sizeof(db->msg),
             "database is locked by another process (gave up after waiting "
             "%d ms)",
             db->busy_ms);
  else if (why[0])
    snprintf(db->msg, sizeof(db->msg), "%s", why);
  else
    snprintf(db->msg, sizeof(db->msg), "%s", sqlite3_errmsg(db->h));
  db->code = st;
  return st;
}

static int exec(st_db *db, const char *sql) {
  return failed(db, sqlite3_exec(db->h, sql, NULL, NULL, NULL));
}

/* Ends the open transaction after a failure (SQLite may have ended it
 * already); keeps the failure's message. */
static void rollback(st_db *db) {
  if (!sqlite3_get_autocommit(db->h))
    sqlite3_exec(db->h, "ROLLBACK", NULL, NULL, NULL);
}

/* The first column of the first row of sql as an integer (0 without rows);
 * an SQLite result code. */
static int query_int_raw(sqlite3 *h, const char *sql, int64_t *out) {
  sqlite3_stmt *s = NULL;
  int rc = sqlite3_prepare_v2(h, sql, -1, &s, NULL);
  if (rc == SQLITE_OK) {
    rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
      *out = sqlite3_column_int64(s, 0);
      rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
      *out = 0;
      rc = SQLITE_OK;
    }
  }
  sqlite3_finalize(s);
  return rc;
}

static int query_int(st_db *db, const char *sql, int64_t *out) {
  return failed(db, query_int_raw(db->h, sql, out));
}

/* Prepared statement `id`, reset and unbound, or NULL (the failure is
 * recorded: db->code, st_errmsg). */
static sqlite3_stmt *stmt(st_db *db, int id) {
  if (!db->q[id]) {
    int rc = sqlite3_prepare_v3(db->h, query_sql[id], -1,
                                SQLITE_PREPARE_PERSISTENT, &db->q[id], NULL);
    if (rc != SQLITE_OK) {
      failed(db, rc);
      return NULL;
    }
  }
  sqlite3_reset(db->q[id]);
  sqlite3_clear_bindings(db->q[id]);
  return db->q[id];
}

static void bind_text(sqlite3_stmt *s, int i, const char *t) {
  if (t)
    sqlite3_bind_text(s, i, t, -1, SQLITE_TRANSIENT);
  else
    sqlite3_bind_null(s, i);
}

/* Steps an INSERT to completion; the statement is reset afterwards. */
static int step_done(st_db *db, sqlite3_stmt *s) {
  int rc = sqlite3_step(s);
  int st = rc == SQLITE_DONE ? ST_OK : failed(db, rc);
  sqlite3_reset(s);
  return st;
}

static int writable_bits(const struct stat *st) {
  return (st->st_mode & (S_IWUSR | S_IWGRP | S_IWOTH)) != 0;
}

/* The directory part of path into buf ("." for a bare name). */
static void dir_of(const char *path, char *buf, size_t len) {
  snprintf(buf, len, "%s", path);
  char *d = dirname(buf);
  if (d != buf)
    memmove(buf, d, strlen(d) + 1);
}

/* Step 1 and 2 of the header comment: the file system says yes or no. */
static int check_path(const char *path, int mode, int *is_new, char *errmsg,
                      size_t errlen) {
  struct stat st;
  char dir[4096];
  *is_new = 0;
  dir_of(path, dir, sizeof(dir));
  if (stat(path, &st) != 0) {
    if (errno != ENOENT) {
      say(errmsg, errlen, "%s: cannot open database: %s", path, strerror(errno));
      return ST_EOPEN;
    }
    if (mode != ST_WRITE) {
      say(errmsg, errlen, "%s: no such database file", path);
      return ST_EOPEN;
    }
    struct stat ds;
    if (stat(dir, &ds) != 0 || !S_ISDIR(ds.st_mode)) {
      say(errmsg, errlen, "%s: cannot create database: no such directory '%s'",
          path, dir);
      return ST_EOPEN;
    }
    if (!writable_bits(&ds) || access(dir, W_OK | X_OK) != 0) {
      say(errmsg, errlen,
          "%s: cannot create database: directory '%s' is read-only", path, dir);
      return ST_EREADONLY;
    }
    *is_new = 1;
    return ST_OK;
  }
  if (S_ISDIR(st.st_mode)) {
    say(errmsg, errlen, "%s: is a directory, not a database file", path);
    return ST_EOPEN;
  }
  if (access(path, R_OK) != 0) {
    say(errmsg, errlen, "%s: cannot read database: %s", path, strerror(errno));
    return ST_EOPEN;
  }
  if (mode == ST_WRITE) {
    if (!writable_bits(&st) || access(path, W_OK) != 0) {
      say(errmsg, errlen, "%s: database is read-only (cannot write results)",
          path);
      return ST_EREADONLY;
    }
    struct stat ds;
    if (stat(dir, &ds) == 0 &&
        (!writable_bits(&ds) || access(dir, W_OK | X_OK) != 0)) {
      say(errmsg, errlen,
          "%s: database directory '%s' is read-only (SQLite needs to create "
          "its journal there)",
          path, dir);
      return ST_EREADONLY;
    }
  }
  if (st.st_size == 0) {
    if (mode != ST_WRITE) {
      say(errmsg, errlen, "%s: not a flexmoe database (empty file)", path);
      return ST_ENOTDB;
    }
    *is_new = 1;
    return ST_OK;
  }
  unsigned char head[16];
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  ssize_t got = fd >= 0 ? read(fd, head, sizeof(head)) : -1;
  if (fd >= 0)
    close(fd);
  if (got != (ssize_t)sizeof(head) ||
      memcmp(head, "SQLite format 3", 16) != 0) {
    say(errmsg, errlen, "%s: not a flexmoe database (not an SQLite file)",
        path);
    return ST_ENOTDB;
  }
  return ST_OK;
}

/* Opens path for reading. Without a -wal file (no connection has the
 * database open in WAL mode and none died mid-write: the last writer's close
 * checkpoints and deletes it) and without a hot -journal, every committed row
 * is in the file itself, and it is opened immutable: SQLite then creates no
 * -wal or -shm file and takes no locks, so a read-only file in a read-only
 * directory can be read, and nothing is left next to the database. With a
 * -wal file, the ordinary read-only open reads the committed frames in it
 * through the existing -wal and -shm. *immutable says which; *ident is the
 * file's identity at open, for changed_under_us(). An SQLite result code. */
static int open_reader(const char *path, sqlite3 **h, int allow_immutable,
                       int *immutable, struct stat *ident) {
  char side[4200];
  struct stat st;
  snprintf(side, sizeof(side), "%s-wal", path);
  int wal = stat(side, &st) == 0;
  snprintf(side, sizeof(side), "%s-journal", path);
  int journal = stat(side, &st) == 0 && st.st_size > 0;
  *immutable = allow_immutable && !wal && !journal && stat(path, ident) == 0;
  if (!*immutable)
    return sqlite3_open_v2(path, h, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX,
                           NULL);
  /* file: URI of the path; '%', '?' and '#' escaped */
  char uri[3 * 4096 + 64];
  size_t n = (size_t)snprintf(uri, sizeof(uri), "file:%s",
                              path[0] == '/' ? "//" : "");
  for (const char *c = path; *c && n + 4 < sizeof(uri); c++) {
    if (*c == '%' || *c == '?' || *c == '#')
      n += (size_t)snprintf(uri + n, sizeof(uri) - n, "%%%02X", (unsigned char)*c);
    else
      uri[n++] = *c;
  }
  snprintf(uri + n, sizeof(uri) - n, "?mode=ro&immutable=1");
  return sqlite3_open_v2(uri, h,
                         SQLITE_OPEN_READONLY | SQLITE_OPEN_URI |
                             SQLITE_OPEN_NOMUTEX,
                         NULL);
}

static int say_newer(char *errmsg, size_t errlen, const char *path,
                     int64_t ver) {
  say(errmsg, errlen,
      "%s: the database is newer than this flexmoe (schema version %" PRId64
      "; this flexmoe reads versions 1 to %d): use a newer flexmoe",
      path, ver, ST_SCHEMA_VERSION);
  return ST_EVERSION;
}

/* The identity of the file at path: application_id, user_version and the
 * number of schema entries, read in one read transaction so that another
 * process's migration committing between them cannot mix two states (it did:
 * two sweeps creating one database, one saw the tables but not yet the id).
 * A writer reads through an ordinary read-only connection; a reader may read
 * an idle file immutable (read-only media) and then checks that the file did
 * not change under it, reading again through a locking connection if it did.
 * An SQLite result code; *h stays open for the caller's error message. */
static int read_identity(const char *path, int writer, sqlite3 **h,
                         int64_t *app, int64_t *ver, int64_t *tables) {
  for (int attempt = 0;; attempt++) {
    int immutable = 0;
    struct stat ident, now;
    int rc = open_reader(path, h, !writer && attempt == 0, &immutable, &ident);
    if (rc == SQLITE_OK) {
      sqlite3_busy_timeout(*h, BUSY_TIMEOUT_MS);
      rc = sqlite3_exec(*h, "BEGIN", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK)
      rc = query_int_raw(*h, "PRAGMA application_id", app);
    if (rc == SQLITE_OK)
      rc = query_int_raw(*h, "PRAGMA user_version", ver);
    if (rc == SQLITE_OK)
      rc = query_int_raw(*h, "SELECT count(*) FROM sqlite_master", tables);
    if (rc != SQLITE_OK)
      return rc;
    sqlite3_exec(*h, "COMMIT", NULL, NULL, NULL);
    if (!immutable ||
        (stat(path, &now) == 0 && now.st_ino == ident.st_ino &&
         now.st_size == ident.st_size &&
         now.st_mtim.tv_sec == ident.st_mtim.tv_sec &&
         now.st_mtim.tv_nsec == ident.st_mtim.tv_nsec))
      return SQLITE_OK;
    sqlite3_close(*h);
    *h = NULL;
  }
}

/* Step 3: application_id, user_version and emptiness through a read-only
 * connection. *fresh = 1 for an SQLite file with no schema at all. */
static int check_identity(const char *path, int writer, int *fresh,
                          char *errmsg, size_t errlen) {
  sqlite3 *h = NULL;
  int64_t app = 0, ver = 0, tables = 0;
  int rc = map_rc(read_identity(path, writer, &h, &app, &ver, &tables));
  if (rc != ST_OK) {
    if (rc == ST_ENOTDB || rc == ST_ESQL)
      say(errmsg, errlen, "%s: not a flexmoe database (%s)", path,
          h ? sqlite3_errmsg(h) : "unreadable");
    else
      say(errmsg, errlen, "%s: cannot open database: %s", path,
          h ? sqlite3_errmsg(h) : st_strerror(rc));
    sqlite3_close(h);
    return rc == ST_ESQL ? ST_ENOTDB : rc;
  }
  sqlite3_close(h);
  *fresh = 0;
  if (app == 0 && ver == 0 && tables == 0) {
    *fresh = 1;
    return ST_OK;
  }
  if (app != ST_APPLICATION_ID) {
    say(errmsg, errlen,
        "%s: not a flexmoe database (an SQLite file of another application, "
        "application_id %" PRId64 ")",
        path, app);
    return ST_ENOTDB;
  }
  if (ver > ST_SCHEMA_VERSION)
    return say_newer(errmsg, errlen, path, ver);
  return ST_OK;
}

/* Step 4: runs the missing migration steps in one IMMEDIATE transaction. */
static int migrate(st_db *db, const char *path, char *errmsg, size_t errlen) {
  /* Up to date (the common case): no transaction, so opening does not wait
   * for another process's write lock; the first write will, with the
   * caller's busy timeout. */
  int64_t ver = 0, app = 0;
  if (query_int(db, "PRAGMA user_version", &ver) == ST_OK &&
      query_int(db, "PRAGMA application_id", &app) == ST_OK &&
      ver == ST_SCHEMA_VERSION && app == ST_APPLICATION_ID) {
    db->version = ST_SCHEMA_VERSION;
    return ST_OK;
  }
  int rc = exec(db, "BEGIN IMMEDIATE");
  if (rc == ST_OK)
    rc = query_int(db, "PRAGMA user_version", &ver);
  if (rc == ST_OK && ver > ST_SCHEMA_VERSION) {
    rollback(db);
    return say_newer(errmsg, errlen, path, ver);
  }
  for (int i = 0; rc == ST_OK && i < NMIGRATIONS; i++) {
    if (migrations[i].version <= ver)
      continue;
    int64_t dups = 0;
    if (migrations[i].version == 3 &&
        (rc = query_int(db, "SELECT count(*) " V3_DUPLICATES, &dups)) != ST_OK)
      break;
    if (dups > 0)
      snprintf(db->notice, sizeof(db->notice),
               "%s: %" PRId64 " run%s stored twice under one configuration "
               "(before schema version 3) marked 'superseded'; the latest "
               "complete run of each configuration is kept",
               path, dups, dups == 1 ? "" : "s");
    rc = exec(db, migrations[i].sql);
    if (rc == ST_OK) {
      char sql[64];
      snprintf(sql, sizeof(sql), "PRAGMA user_version = %d",
               migrations[i].version);
      rc = exec(db, sql);
    }
  }
  if (rc == ST_OK) {
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA application_id = %d", ST_APPLICATION_ID);
    rc = exec(db, sql);
  }
  if (rc == ST_OK)
    rc = exec(db, "COMMIT");
  if (rc != ST_OK) {
    say(errmsg, errlen, "%s: cannot set up the schema: %s", path, db->msg);
    rollback(db);
    db->notice[0] = '\0';
    return rc;
  }
  db->version = ST_SCHEMA_VERSION;
  return ST_OK;
}

/* Switches a writer's connection to WAL. Leaving rollback-journal mode needs
 * the exclusive lock, and SQLite answers SQLITE_BUSY at once, without calling
 * the busy handler, while another process holds any lock on the file (two
 * sweeps creating one database at the same moment). So this waits itself, in
 * steps of 10 ms, up to the busy timeout. An already-WAL database takes no
 * exclusive lock and returns at once. */
static int set_wal(st_db *db) {
  struct timespec t0, now;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    int rc = exec(db, "PRAGMA journal_mode = WAL");
    if (rc != ST_EBUSY)
      return rc;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double waited_ms = (double)(now.tv_sec - t0.tv_sec) * 1e3 +
                       (double)(now.tv_nsec - t0.tv_nsec) / 1e6;
    if (waited_ms >= db->busy_ms)
      return rc;
    sqlite3_sleep(10);
  }
}

int st_open(st_db **out, const char *path, int mode, char *errmsg,
            size_t errlen) {
  if (!out || !path || !*path || (mode != ST_READ && mode != ST_WRITE)) {
    say(errmsg, errlen, "invalid arguments to st_open");
    return ST_EINVAL;
  }
  int is_new = 0, fresh = 1;
  int rc = check_path(path, mode, &is_new, errmsg, errlen);
  if (rc != ST_OK)
    return rc;
  if (!is_new && (rc = check_identity(path, mode == ST_WRITE, &fresh, errmsg, errlen)) != ST_OK)
    return rc;
  if (mode == ST_READ && fresh) {
    say(errmsg, errlen, "%s: not a flexmoe database (no flexmoe tables)", path);
    return ST_ENOTDB;
  }
  st_db *db = calloc(1, sizeof(*db));
  if (!db) {
    say(errmsg, errlen, "%s: out of memory", path);
    return ST_ENOMEM;
  }
  db->mode = mode;
  if (!(db->path = strdup(path))) {
    say(errmsg, errlen, "%s: out of memory", path);
    free(db);
    return ST_ENOMEM;
  }
  if (mode == ST_WRITE)
    rc = map_rc(sqlite3_open_v2(
        path, &db->h,
        SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
        NULL));
  else
    rc = map_rc(open_reader(path, &db->h, 1, &db->immutable, &db->ident));
  if (rc != ST_OK) {
    say(errmsg, errlen, "%s: cannot open database: %s", path,
        db->h ? sqlite3_errmsg(db->h) : "out of memory");
    goto fail;
  }
  sqlite3_busy_timeout(db->h, BUSY_TIMEOUT_MS);
  db->busy_ms = BUSY_TIMEOUT_MS;
  sqlite3_extended_result_codes(db->h, 0);
  if ((rc = exec(db, "PRAGMA foreign_keys = ON")) != ST_OK)
    goto fail_sql;
  if (mode == ST_WRITE) {
    if ((rc = set_wal(db)) != ST_OK ||
        (rc = exec(db, "PRAGMA synchronous = NORMAL")) != ST_OK)
      goto fail_sql;
    if ((rc = migrate(db, path, errmsg, errlen)) != ST_OK)
      goto fail;
  } else {
    int64_t ver = 0;
    if ((rc = query_int(db, "PRAGMA user_version", &ver)) != ST_OK)
      goto fail_sql;
    /* A read-only connection cannot migrate an older schema: the v1 tables
     * and queries are all there; st_schema_version tells what is. */
    db->version = (int)ver;
  }
  *out = db;
  return ST_OK;
fail_sql:
  say(errmsg, errlen, "%s: %s", path, db->msg);
fail:
  sqlite3_close(db->h);
  free(db->path);
  free(db);
  return rc;
}

void st_close(st_db *db) {
  if (!db)
    return;
  if (db->open_run)
    st_run_abort(db->open_run);
  for (int i = 0; i < NQ; i++)
    sqlite3_finalize(db->q[i]);
  sqlite3_close(db->h);
  free(db->path);
  free(db);
}

const char *st_errmsg(const st_db *db) {
  if (!db || !db->h)
    return "no database";
  return db->code != ST_OK ? db->msg : sqlite3_errmsg(db->h);
}

int st_errcode(const st_db *db) { return db ? db->code : ST_EINVAL; }

int st_schema_version(const st_db *db) { return db ? db->version : 0; }

int st_busy_timeout(st_db *db, int ms) {
  if (!db || ms < 0)
    return ST_EINVAL;
  int rc = failed(db, sqlite3_busy_timeout(db->h, ms));
  if (rc == ST_OK)
    db->busy_ms = ms;
  return rc;
}

/* ---- traces and clusters (inside the caller's transaction) ---- */

/* Steps the bound lookup s: *found = 1 and *id = its first column when it
 * returns a row, *found = 0 when none; leaves s reset. */
static int find_id(st_db *db, sqlite3_stmt *s, int64_t *id, int *found) {
  int rc = sqlite3_step(s);
  *found = rc == SQLITE_ROW;
  if (*found)
    *id = sqlite3_column_int64(s, 0);
  sqlite3_reset(s);
  return rc == SQLITE_ROW || rc == SQLITE_DONE ? ST_OK : failed(db, rc);
}

static int trace_upsert(st_db *db, const st_trace_row *t, int64_t *id) {
  char hash[17];
  snprintf(hash, sizeof(hash), "%016" PRIx64, t->hash);
  sqlite3_stmt *s = stmt(db, Q_TRACE_FIND);
  if (!s)
    return db->code;
  bind_text(s, 1, t->path);
  bind_text(s, 2, hash);
  int found = 0;
  int rc = find_id(db, s, id, &found);
  if (rc != ST_OK || found)
    return rc;
  if (!(s = stmt(db, Q_TRACE_INSERT)))
    return db->code;
  bind_text(s, 1, t->path);
  bind_text(s, 2, hash);
  sqlite3_bind_int64(s, 3, t->iterations);
  sqlite3_bind_int(s, 4, t->layers);
  sqlite3_bind_int(s, 5, t->ranks);
  sqlite3_bind_int(s, 6, t->experts);
  bind_text(s, 7, t->meta_json);
  if ((rc = step_done(db, s)) != ST_OK)
    return rc;
  *id = sqlite3_last_insert_rowid(db->h);
  return ST_OK;
}

static int cluster_upsert(st_db *db, const char *name, const char *json,
                          int gpus, int64_t *id) {
  sqlite3_stmt *s = stmt(db, Q_CLUSTER_FIND);
  if (!s)
    return db->code;
  bind_text(s, 1, name);
  bind_text(s, 2, json);
  sqlite3_bind_int(s, 3, gpus);
  int found = 0;
  int rc = find_id(db, s, id, &found);
  if (rc != ST_OK || found)
    return rc;
  if (!(s = stmt(db, Q_CLUSTER_INSERT)))
    return db->code;
  bind_text(s, 1, name);
  sqlite3_bind_int(s, 2, gpus);
  bind_text(s, 3, json);
  if ((rc = step_done(db, s)) != ST_OK)
    return rc;
  *id = sqlite3_last_insert_rowid(db->h);
  return ST_OK;
}

/* Starts a write transaction outside any run. */
static int begin_write(st_db *db) {
  if (!db)
    return ST_EINVAL;
  if (db->mode != ST_WRITE)
    return ST_EREADONLY;
  if (db->open_run)
    return ST_EBUSY;
  return exec(db, "BEGIN IMMEDIATE");
}

static int end_write(st_db *db, int rc) {
  if (rc == ST_OK && (rc = exec(db, "COMMIT")) == ST_OK)
    return ST_OK;
  rollback(db);
  return rc;
}

int st_trace_put(st_db *db, const st_trace_row *trace, int64_t *trace_id) {
  if (!trace || !trace->path || !trace_id)
    return ST_EINVAL;
  int rc = begin_write(db);
  if (rc != ST_OK)
    return rc;
  int64_t id = 0;
  rc = end_write(db, trace_upsert(db, trace, &id));
  if (rc == ST_OK)
    *trace_id = id;
  return rc;
}

int st_trace_loads_put(st_db *db, int64_t trace_id, int64_t it_begin,
                       int64_t iterations, int layers, int experts,
                       const int64_t *loads, int *written) {
  if (!loads || iterations < 0 || layers <= 0 || experts <= 0 || it_begin < 0)
    return ST_EINVAL;
  int rc = begin_write(db);
  if (rc != ST_OK)
    return rc;
  sqlite3_stmt *s = NULL;
  int64_t have = 0;
  char sql[128];
  snprintf(sql, sizeof(sql),
           "SELECT count(*) FROM trace_loads WHERE trace_id = %" PRId64,
           trace_id);
  rc = query_int(db, sql, &have);
  if (rc == ST_OK && have == 0) {
    if (!(s = stmt(db, Q_LOAD_INSERT)))
      rc = db->code;
    for (int64_t i = 0; rc == ST_OK && i < iterations; i++)
      for (int l = 0; rc == ST_OK && l < layers; l++)
        for (int e = 0; rc == ST_OK && e < experts; e++) {
          sqlite3_bind_int64(s, 1, trace_id);
          sqlite3_bind_int64(s, 2, it_begin + i);
          sqlite3_bind_int(s, 3, l);
          sqlite3_bind_int(s, 4, e);
          sqlite3_bind_int64(s, 5, loads[(i * layers + l) * experts + e]);
          rc = step_done(db, s);
        }
  }
  rc = end_write(db, rc);
  if (written)
    *written = rc == ST_OK && have == 0;
  return rc;
}

/* ---- runs ---- */

/* Inside st_run_begin's transaction: makes room for a complete run of
 * config_key, or says it is taken (ST_EEXISTS, with ST_DUP_KEEP). */
static int claim(st_db *db, const char *config_key) {
  int exists = 0;
  int rc = st_run_exists(db, config_key, &exists);
  if (rc != ST_OK || !exists)
    return rc;
  if (db->on_duplicate == ST_DUP_KEEP) {
    snprintf(db->msg, sizeof(db->msg),
             "a complete run of this configuration is already stored "
             "(config_key %.300s)",
             config_key);
    db->code = ST_EEXISTS;
    return ST_EEXISTS;
  }
  sqlite3_stmt *s = stmt(db, Q_RUN_SUPERSEDE);
  if (!s)
    return db->code;
  bind_text(s, 1, config_key);
  return step_done(db, s);
}

int st_on_duplicate(st_db *db, int what) {
  if (!db || (what != ST_DUP_SUPERSEDE && what != ST_DUP_KEEP))
    return ST_EINVAL;
  db->on_duplicate = what;
  return ST_OK;
}

const char *st_notice(const st_db *db) { return db ? db->notice : ""; }

int st_run_begin(st_db *db, const st_trace_row *trace, const st_run_row *run,
                 st_run **out) {
  if (!run || !out || !run->kind || !run->policy || run->gpus <= 0 ||
      (strcmp(run->kind, "sim") != 0 && strcmp(run->kind, "gpu") != 0) ||
      (trace && !trace->path))
    return ST_EINVAL;
  st_run *r = calloc(1, sizeof(*r));
  if (!r)
    return ST_ENOMEM;
  int rc = begin_write(db);
  if (rc != ST_OK) {
    free(r);
    return rc;
  }
  const char *status = run->status ? run->status : "complete";
  if (run->config_key && *run->config_key && strcmp(status, "complete") == 0)
    rc = claim(db, run->config_key);
  int64_t trace_id = 0, cluster_id = 0;
  if (rc == ST_OK && trace)
    rc = trace_upsert(db, trace, &trace_id);
  if (rc == ST_OK)
    rc = cluster_upsert(db, run->cluster ? run->cluster : "", run->cluster_json,
                        run->gpus, &cluster_id);
  sqlite3_stmt *s = rc == ST_OK ? stmt(db, Q_RUN_INSERT) : NULL;
  if (rc == ST_OK && !s)
    rc = db->code;
  if (rc == ST_OK) {
    bind_text(s, 1, run->kind);
    if (trace)
      sqlite3_bind_int64(s, 2, trace_id);
    sqlite3_bind_int64(s, 3, cluster_id);
    bind_text(s, 4, run->policy);
    bind_text(s, 5, run->engine);
    bind_text(s, 6, run->params_json);
    sqlite3_bind_int(s, 7, run->gpus);
    sqlite3_bind_int64(s, 8, (int64_t)run->seed);
    bind_text(s, 9, run->rng);
    bind_text(s, 10, run->code_version);
    sqlite3_bind_double(s, 11, run->started);
    sqlite3_bind_double(s, 12, run->finished);
    bind_text(s, 13, status);
    bind_text(s, 14, run->config_key);
    rc = step_done(db, s);
  }
  if (rc != ST_OK) {
    rollback(db);
    free(r);
    return rc;
  }
  r->db = db;
  r->id = sqlite3_last_insert_rowid(db->h);
  db->open_run = r;
  *out = r;
  return ST_OK;
}

int st_run_iteration(st_run *r, const st_iter_row *row) {
  if (!r || !row)
    return ST_EINVAL;
  sqlite3_stmt *s = stmt(r->db, Q_ITER_INSERT);
  if (!s)
    return r->db->code;
  sqlite3_bind_int64(s, 1, r->id);
  sqlite3_bind_int64(s, 2, row->iteration);
  sqlite3_bind_double(s, 3, row->time_ms);
  sqlite3_bind_double(s, 4, row->compute_ms);
  sqlite3_bind_double(s, 5, row->alltoall_ms);
  sqlite3_bind_double(s, 6, row->allreduce_ms);
  sqlite3_bind_double(s, 7, row->migration_ms);
  sqlite3_bind_double(s, 8, row->other_ms);
  sqlite3_bind_double(s, 9, row->balance);
  sqlite3_bind_int64(s, 10, row->bytes_alltoall);
  sqlite3_bind_int64(s, 11, row->bytes_migrated);
  sqlite3_bind_int64(s, 12, row->tokens_dropped);
  sqlite3_bind_int64(s, 13, row->tokens_total);
  return step_done(r->db, s);
}

int st_run_plan(st_run *r, int64_t iteration, int layer, int nmoves,
                int64_t bytes, const char *moves_json) {
  if (!r || nmoves < 0 || bytes < 0)
    return ST_EINVAL;
  sqlite3_stmt *s = stmt(r->db, Q_PLAN_INSERT);
  if (!s)
    return r->db->code;
  sqlite3_bind_int64(s, 1, r->id);
  sqlite3_bind_int64(s, 2, iteration);
  sqlite3_bind_int(s, 3, layer);
  sqlite3_bind_int(s, 4, nmoves);
  sqlite3_bind_int64(s, 5, bytes);
  bind_text(s, 6, moves_json);
  return step_done(r->db, s);
}

int st_run_gpu(st_run *r, int gpu, double busy_ms, double idle_ms) {
  if (!r || gpu < 0)
    return ST_EINVAL;
  sqlite3_stmt *s = stmt(r->db, Q_GPU_INSERT);
  if (!s)
    return r->db->code;
  sqlite3_bind_int64(s, 1, r->id);
  sqlite3_bind_int(s, 2, gpu);
  sqlite3_bind_double(s, 3, busy_ms);
  sqlite3_bind_double(s, 4, idle_ms);
  return step_done(r->db, s);
}

int st_run_layer(st_run *r, int64_t iteration, int layer, double balance,
                 double time_ms) {
  if (!r || layer < 0)
    return ST_EINVAL;
  sqlite3_stmt *s = stmt(r->db, Q_LAYER_INSERT);
  if (!s)
    return r->db->code;
  sqlite3_bind_int64(s, 1, r->id);
  sqlite3_bind_int64(s, 2, iteration);
  sqlite3_bind_int(s, 3, layer);
  sqlite3_bind_double(s, 4, balance);
  sqlite3_bind_double(s, 5, time_ms);
  return step_done(r->db, s);
}

int st_run_commit(st_run *r, int64_t *run_id) {
  if (!r)
    return ST_EINVAL;
  st_db *db = r->db;
  int64_t id = r->id;
  int rc = exec(db, "COMMIT");
  if (rc != ST_OK)
    rollback(db);
  db->open_run = NULL;
  free(r);
  if (rc == ST_OK && run_id)
    *run_id = id;
  return rc;
}

void st_run_abort(st_run *r) {
  if (!r)
    return;
  rollback(r->db);
  r->db->open_run = NULL;
  free(r);
}

/* For a connection opened immutable (open_reader): whether the file changed
 * since, i.e. a writer opened the database meanwhile and checkpointed into
 * it (or wrote it in rollback-journal mode), so that what was just read may
 * mix two states. Then records ST_EBUSY with a sentence that says to read
 * again; otherwise returns rc. The window is the few milliseconds of a read:
 * a writer's commits go to its -wal file, and the file itself only changes
 * at a checkpoint (at 1,000 pages of WAL, or when the last writer closes). */
static int changed_under_us(st_db *db, int rc) {
  struct stat now;
  if (!db->immutable)
    return rc;
  if (stat(db->path, &now) == 0 && now.st_ino == db->ident.st_ino &&
      now.st_dev == db->ident.st_dev && now.st_size == db->ident.st_size &&
      now.st_mtim.tv_sec == db->ident.st_mtim.tv_sec &&
      now.st_mtim.tv_nsec == db->ident.st_mtim.tv_nsec)
    return rc;
  snprintf(db->msg, sizeof(db->msg),
           "%.400s changed while it was being read (another process wrote to "
           "it): read it again",
           db->path);
  db->code = ST_EBUSY;
  return ST_EBUSY;
}

int st_run_exists(st_db *db, const char *config_key, int *exists) {
  if (!db || !config_key || !exists)
    return ST_EINVAL;
  sqlite3_stmt *s = stmt(db, Q_RUN_EXISTS);
  if (!s)
    return db->code;
  bind_text(s, 1, config_key);
  int rc = sqlite3_step(s);
  sqlite3_reset(s);
  if (rc != SQLITE_ROW && rc != SQLITE_DONE)
    return changed_under_us(db, failed(db, rc));
  if (changed_under_us(db, ST_OK) != ST_OK)
    return db->code;
  *exists = rc == SQLITE_ROW;
  return ST_OK;
}

/* ---- profiles and validations ---- */

int st_profile_put(st_db *db, const char *name, const char *json) {
  if (!name || !*name || !json)
    return ST_EINVAL;
  int rc = begin_write(db);
  if (rc != ST_OK)
    return rc;
  sqlite3_stmt *s = NULL;
  rc = failed(db, sqlite3_prepare_v2(db->h,
                                 "INSERT OR REPLACE INTO profiles(name, json, "
                                 "created) VALUES(?, ?, ?)",
                                 -1, &s, NULL));
  if (rc == ST_OK) {
    bind_text(s, 1, name);
    bind_text(s, 2, json);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    sqlite3_bind_double(s, 3, (double)ts.tv_sec + ts.tv_nsec * 1e-9);
    rc = step_done(db, s);
  }
  sqlite3_finalize(s);
  return end_write(db, rc);
}

int st_profile_get(st_db *db, const char *name, char **json) {
  if (!db || !name || !json)
    return ST_EINVAL;
  sqlite3_stmt *s = NULL;
  int rc = failed(db, sqlite3_prepare_v2(
      db->h, "SELECT json FROM profiles WHERE name = ?", -1, &s, NULL));
  if (rc == ST_OK) {
    bind_text(s, 1, name);
    int step = sqlite3_step(s);
    if (step == SQLITE_ROW) {
      const char *t = (const char *)sqlite3_column_text(s, 0);
      char *copy = strdup(t ? t : "");
      if (!copy)
        rc = ST_ENOMEM;
      else
        *json = copy;
    } else {
      rc = step == SQLITE_DONE ? ST_ENOTFOUND : failed(db, step);
    }
  }
  sqlite3_finalize(s);
  return rc;
}

static void bind_maybe(sqlite3_stmt *s, int i, double v) {
  if (isfinite(v))
    sqlite3_bind_double(s, i, v);
  else
    sqlite3_bind_null(s, i);
}

int st_validation_add(st_db *db, const st_validation_row *v, int64_t *id) {
  if (!v)
    return ST_EINVAL;
  int rc = begin_write(db);
  if (rc != ST_OK)
    return rc;
  sqlite3_stmt *s = NULL;
  rc = failed(db, sqlite3_prepare_v2(
      db->h,
      "INSERT INTO validations(predicted_run, measured_run, err_time, "
      "err_compute, err_alltoall, err_allreduce, err_migration, err_other, "
      "detail_json) VALUES(?,?,?,?,?,?,?,?,?)",
      -1, &s, NULL));
  if (rc == ST_OK) {
    sqlite3_bind_int64(s, 1, v->predicted_run);
    sqlite3_bind_int64(s, 2, v->measured_run);
    bind_maybe(s, 3, v->err_time);
    bind_maybe(s, 4, v->err_compute);
    bind_maybe(s, 5, v->err_alltoall);
    bind_maybe(s, 6, v->err_allreduce);
    bind_maybe(s, 7, v->err_migration);
    bind_maybe(s, 8, v->err_other);
    bind_text(s, 9, v->detail_json);
    rc = step_done(db, s);
  }
  sqlite3_finalize(s);
  int64_t rowid = sqlite3_last_insert_rowid(db->h);
  rc = end_write(db, rc);
  if (rc == ST_OK && id)
    *id = rowid;
  return rc;
}

int st_validations_count(st_db *db, int64_t *n) {
  if (!db || !n)
    return ST_EINVAL;
  int64_t v = 0;
  int rc = changed_under_us(
      db, query_int(db, "SELECT count(*) FROM validations", &v));
  if (rc == ST_OK)
    *n = v;
  return rc;
}

/* ---- queries ---- */

static void copy_col(sqlite3_stmt *s, int i, char *dst, size_t len) {
  const char *t = (const char *)sqlite3_column_text(s, i);
  snprintf(dst, len, "%s", t ? t : "");
}

/* Doubles a result array read row by row (first allocation: `first` rows).
 * ST_ENOMEM leaves *arr and *cap as they were, for the caller to free. */
static int grow_rows(void **arr, size_t *cap, size_t elem, size_t first) {
  size_t ncap = *cap ? 2 * *cap : first;
  void *grown = realloc(*arr, ncap * elem);
  if (!grown)
    return ST_ENOMEM;
  *arr = grown;
  *cap = ncap;
  return ST_OK;
}

double st_effective_ms(double mean_ms, int64_t tokens_dropped,
                       int64_t tokens_total) {
  if (tokens_total <= 0 || tokens_dropped <= 0)
    return mean_ms;
  if (tokens_dropped >= tokens_total)
    return INFINITY;
  /* mean / (1 - d/t) written as mean * t / (t - d): no cancellation in
   * 1 - d/t when nearly everything is dropped */
  return mean_ms * (double)tokens_total / (double)(tokens_total - tokens_dropped);
}

/* The end of a list query over s after its last sqlite3_step (step): a
 * step error recorded, s finalised, and a file changed under an immutable
 * reader reported (changed_under_us). Returns the list's status; on
 * failure the caller frees the rows it gathered. */
static int end_rows(st_db *db, sqlite3_stmt *s, int rc, int step) {
  if (rc == ST_OK && step != SQLITE_DONE)
    rc = failed(db, step);
  sqlite3_finalize(s);
  return changed_under_us(db, rc);
}

/* 16 hex digits of FNV-1a over a TEXT column, "" when it is empty: the
 * identity of a cluster description without keeping all of it per run. */
static void cluster_hash(sqlite3_stmt *s, int i, char out[17]) {
  const unsigned char *t = sqlite3_column_text(s, i);
  out[0] = '\0';
  if (!t || !*t)
    return;
  uint64_t h = 14695981039346656037ULL;
  for (; *t; t++)
    h = (h ^ *t) * 1099511628211ULL;
  snprintf(out, 17, "%016" PRIx64, h);
}

int st_runs_list(st_db *db, const char *kind, st_run_summary **rows,
                 size_t *n) {
  if (!db || !rows || !n)
    return ST_EINVAL;
  static const char sql[] =
      "SELECT r.id, r.kind, r.policy, COALESCE(c.name, ''), "
      "  COALESCE(r.engine, ''), COALESCE(t.path, ''), COALESCE(t.hash, ''),"
      "  r.status, COALESCE(r.config_key, ''), r.gpus, r.seed, r.started,"
      "  r.finished, count(i.iteration), avg(i.time_ms), avg(i.compute_ms),"
      "  avg(i.alltoall_ms), avg(i.allreduce_ms), avg(i.migration_ms),"
      "  avg(i.other_ms), avg(i.balance), total(i.bytes_alltoall),"
      "  total(i.bytes_migrated), total(i.tokens_dropped),"
      "  total(i.tokens_total), COALESCE(min(i.iteration), 0),"
      "  COALESCE(max(i.iteration), -1), COALESCE(r.params_json, ''),"
      /* the cluster's description without its size (gpus and
       * gpus_per_node say it), and its GPUs per node */
      "  CASE WHEN c.json IS NULL THEN '' WHEN json_valid(c.json) THEN "
      "  json_remove(c.json, '$.nodes', '$.gpus_per_node') ELSE c.json END,"
      "  CASE WHEN json_valid(c.json) THEN "
      "  COALESCE(json_extract(c.json, '$.gpus_per_node'), 0) ELSE 0 END "
      "FROM runs r LEFT JOIN clusters c ON c.id = r.cluster_id "
      "LEFT JOIN traces t ON t.id = r.trace_id "
      "LEFT JOIN iterations i ON i.run_id = r.id "
      "WHERE r.status = 'complete' AND (?1 IS NULL OR r.kind = ?1) "
      "GROUP BY r.id ORDER BY r.id";
  sqlite3_stmt *s = NULL;
  st_run_summary *out = NULL;
  size_t count = 0, cap = 0;
  int rc = failed(db, sqlite3_prepare_v2(db->h, sql, -1, &s, NULL));
  if (rc != ST_OK)
    return rc;
  bind_text(s, 1, kind);
  int step;
  while ((step = sqlite3_step(s)) == SQLITE_ROW) {
    if (count == cap && (rc = grow_rows((void **)&out, &cap, sizeof(*out), 16)) != ST_OK)
      break;
    st_run_summary *r = &out[count++];
    memset(r, 0, sizeof(*r));
    r->id = sqlite3_column_int64(s, 0);
    copy_col(s, 1, r->kind, sizeof(r->kind));
    copy_col(s, 2, r->policy, sizeof(r->policy));
    copy_col(s, 3, r->cluster, sizeof(r->cluster));
    copy_col(s, 4, r->engine, sizeof(r->engine));
    copy_col(s, 5, r->trace, sizeof(r->trace));
    copy_col(s, 6, r->trace_hash, sizeof(r->trace_hash));
    copy_col(s, 7, r->status, sizeof(r->status));
    copy_col(s, 8, r->config_key, sizeof(r->config_key));
    r->gpus = sqlite3_column_int(s, 9);
    r->seed = (uint64_t)sqlite3_column_int64(s, 10);
    r->started = sqlite3_column_double(s, 11);
    r->finished = sqlite3_column_double(s, 12);
    r->iterations = sqlite3_column_int64(s, 13);
    r->mean_ms = sqlite3_column_double(s, 14);
    r->compute_ms = sqlite3_column_double(s, 15);
    r->alltoall_ms = sqlite3_column_double(s, 16);
    r->allreduce_ms = sqlite3_column_double(s, 17);
    r->migration_ms = sqlite3_column_double(s, 18);
    r->other_ms = sqlite3_column_double(s, 19);
    r->balance_mean = sqlite3_column_double(s, 20);
    r->bytes_alltoall = (int64_t)sqlite3_column_double(s, 21);
    r->bytes_migrated = (int64_t)sqlite3_column_double(s, 22);
    r->tokens_dropped = (int64_t)sqlite3_column_double(s, 23);
    r->tokens_total = (int64_t)sqlite3_column_double(s, 24);
    r->it_first = sqlite3_column_int64(s, 25);
    r->it_last = sqlite3_column_int64(s, 26);
    r->effective_ms = st_effective_ms(r->mean_ms, r->tokens_dropped, r->tokens_total);
    copy_col(s, 27, r->params_json, sizeof(r->params_json));
    cluster_hash(s, 28, r->cluster_hash);
    r->gpus_per_node = sqlite3_column_int(s, 29);
  }
  rc = end_rows(db, s, rc, step);
  if (rc != ST_OK) {
    free(out);
    return rc;
  }
  *rows = out;
  *n = count;
  return ST_OK;
}

int st_run_iterations(st_db *db, int64_t run_id, st_iter_row **rows,
                      size_t *n) {
  if (!db || !rows || !n)
    return ST_EINVAL;
  sqlite3_stmt *s = NULL;
  st_iter_row *out = NULL;
  size_t count = 0, cap = 0;
  int rc = failed(db, sqlite3_prepare_v2(
      db->h,
      "SELECT iteration, time_ms, compute_ms, alltoall_ms, allreduce_ms, "
      "migration_ms, other_ms, balance, bytes_alltoall, bytes_migrated, "
      "tokens_dropped, tokens_total FROM iterations WHERE run_id = ? "
      "ORDER BY iteration",
      -1, &s, NULL));
  if (rc != ST_OK)
    return rc;
  sqlite3_bind_int64(s, 1, run_id);
  int step;
  while ((step = sqlite3_step(s)) == SQLITE_ROW) {
    if (count == cap && (rc = grow_rows((void **)&out, &cap, sizeof(*out), 64)) != ST_OK)
      break;
    st_iter_row *r = &out[count++];
    r->iteration = sqlite3_column_int64(s, 0);
    r->time_ms = sqlite3_column_double(s, 1);
    r->compute_ms = sqlite3_column_double(s, 2);
    r->alltoall_ms = sqlite3_column_double(s, 3);
    r->allreduce_ms = sqlite3_column_double(s, 4);
    r->migration_ms = sqlite3_column_double(s, 5);
    r->other_ms = sqlite3_column_double(s, 6);
    r->balance = sqlite3_column_double(s, 7);
    r->bytes_alltoall = sqlite3_column_int64(s, 8);
    r->bytes_migrated = sqlite3_column_int64(s, 9);
    r->tokens_dropped = sqlite3_column_int64(s, 10);
    r->tokens_total = sqlite3_column_int64(s, 11);
  }
  rc = end_rows(db, s, rc, step);
  if (rc != ST_OK) {
    free(out);
    return rc;
  }
  *rows = out;
  *n = count;
  return ST_OK;
}

/* A REAL column, NAN where it is NULL (a phase that was not measured). */
static double col_real(sqlite3_stmt *s, int i) {
  return sqlite3_column_type(s, i) == SQLITE_NULL ? NAN : sqlite3_column_double(s, i);
}

void st_validations_free(st_validation_entry *rows, size_t n) {
  for (size_t i = 0; rows && i < n; i++)
    free((char *)rows[i].v.detail_json);
  free(rows);
}

int st_validations_list(st_db *db, st_validation_entry **rows, size_t *n) {
  if (!db || !rows || !n)
    return ST_EINVAL;
  sqlite3_stmt *s = NULL;
  st_validation_entry *out = NULL;
  size_t count = 0, cap = 0;
  int rc = failed(db, sqlite3_prepare_v2(
      db->h,
      "SELECT id, predicted_run, measured_run, err_time, err_compute, err_alltoall, "
      "err_allreduce, err_migration, err_other, detail_json FROM validations ORDER BY id",
      -1, &s, NULL));
  if (rc != ST_OK)
    return rc;
  int step;
  while ((step = sqlite3_step(s)) == SQLITE_ROW) {
    if (count == cap && (rc = grow_rows((void **)&out, &cap, sizeof(*out), 16)) != ST_OK)
      break;
    const char *detail = (const char *)sqlite3_column_text(s, 9);
    char *copy = detail ? strdup(detail) : NULL;
    if (detail && !copy) {
      rc = ST_ENOMEM;
      break;
    }
    out[count++] = (st_validation_entry){
        .id = sqlite3_column_int64(s, 0),
        .v = {.predicted_run = sqlite3_column_int64(s, 1),
              .measured_run = sqlite3_column_int64(s, 2),
              .err_time = col_real(s, 3),
              .err_compute = col_real(s, 4),
              .err_alltoall = col_real(s, 5),
              .err_allreduce = col_real(s, 6),
              .err_migration = col_real(s, 7),
              .err_other = col_real(s, 8),
              .detail_json = copy},
    };
  }
  rc = end_rows(db, s, rc, step);
  if (rc != ST_OK) {
    st_validations_free(out, count);
    return rc;
  }
  *rows = out;
  *n = count;
  return ST_OK;
}

int st_traces_list(st_db *db, st_trace_entry **rows, size_t *n) {
  if (!db || !rows || !n)
    return ST_EINVAL;
  sqlite3_stmt *s = NULL;
  st_trace_entry *out = NULL;
  size_t count = 0, cap = 0;
  int rc = failed(db, sqlite3_prepare_v2(db->h, "SELECT id, path, hash FROM traces ORDER BY id",
                                         -1, &s, NULL));
  if (rc != ST_OK)
    return rc;
  int step;
  while ((step = sqlite3_step(s)) == SQLITE_ROW) {
    if (count == cap && (rc = grow_rows((void **)&out, &cap, sizeof(*out), 4)) != ST_OK)
      break;
    st_trace_entry *r = &out[count++];
    r->id = sqlite3_column_int64(s, 0);
    copy_col(s, 1, r->path, sizeof(r->path));
    copy_col(s, 2, r->hash, sizeof(r->hash));
  }
  rc = end_rows(db, s, rc, step);
  if (rc != ST_OK) {
    free(out);
    return rc;
  }
  *rows = out;
  *n = count;
  return ST_OK;
}

int st_trace_loads_list(st_db *db, st_trace_load **rows, size_t *n) {
  if (!db || !rows || !n)
    return ST_EINVAL;
  *rows = NULL;
  *n = 0;
  int64_t have = 0;
  int rc = query_int(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
                         "AND name = 'trace_loads'", &have);
  if (rc != ST_OK || !have)
    return rc;
  sqlite3_stmt *s = NULL;
  st_trace_load *out = NULL;
  size_t count = 0, cap = 0;
  rc = failed(db, sqlite3_prepare_v2(db->h,
                                     "SELECT trace_id, iteration, layer, expert, tokens "
                                     "FROM trace_loads ORDER BY trace_id, iteration, layer, "
                                     "expert", -1, &s, NULL));
  if (rc != ST_OK)
    return rc;
  int step;
  while ((step = sqlite3_step(s)) == SQLITE_ROW) {
    if (count == cap && (rc = grow_rows((void **)&out, &cap, sizeof(*out), 256)) != ST_OK)
      break;
    out[count++] = (st_trace_load){.trace_id = sqlite3_column_int64(s, 0),
                                   .iteration = sqlite3_column_int64(s, 1),
                                   .layer = sqlite3_column_int(s, 2),
                                   .expert = sqlite3_column_int(s, 3),
                                   .tokens = sqlite3_column_int64(s, 4)};
  }
  rc = end_rows(db, s, rc, step);
  if (rc != ST_OK) {
    free(out);
    return rc;
  }
  *rows = out;
  *n = count;
  return ST_OK;
}

/* ---------------------------------------------------------------- plans --- */

static char move_kind_letter(pl_move_kind kind) {
  return kind == PL_MOVE_REPLICATE ? 'r' : kind == PL_MOVE_DROP ? 'd' : kind == PL_MOVE_MIGRATE ? 'm' : '?';
}

char *st_plan_moves_json(const pl_move *moves, int nmoves) {
  if (nmoves < 0 || (nmoves > 0 && !moves))
    return NULL;
  /* at most 3 x 11 digits + 10 punctuation per move */
  size_t cap = 4 + (size_t)nmoves * 48, off = 0;
  char *js = malloc(cap);
  if (!js)
    return NULL;
  js[off++] = '[';
  for (int k = 0; k < nmoves; k++) {
    const pl_move *m = &moves[k];
    off += (size_t)snprintf(js + off, cap - off, "%s[%d,%d,%d,\"%c\"]", k ? "," : "", m->expert,
                            m->from, m->to, move_kind_letter(m->kind));
  }
  snprintf(js + off, cap - off, "]");
  return js;
}

int st_run_plan_moves(st_run *r, int64_t iteration, int layer, const pl_move *moves,
                      int nmoves, int keep_moves) {
  if (!r || nmoves < 0 || (nmoves > 0 && !moves))
    return ST_EINVAL;
  int64_t bytes = 0;
  for (int k = 0; k < nmoves; k++)
    bytes += moves[k].bytes;
  char *js = keep_moves ? st_plan_moves_json(moves, nmoves) : NULL;
  if (keep_moves && !js)
    return ST_ENOMEM;
  int rc = st_run_plan(r, iteration, layer, nmoves, bytes, js);
  free(js);
  return rc;
}
