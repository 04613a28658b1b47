-- The schema's whole history, as numbered steps.
--
-- Each step starts with a line "-- step N: what it does". On start-up the
-- server applies every step above the database's PRAGMA user_version, all in
-- one transaction taken with BEGIN IMMEDIATE, then sets user_version to the
-- last step. Steps are never edited once released: a change is a new step.
-- Foreign-key enforcement is off while steps run (SQLite's table-rebuild
-- procedure needs that) and PRAGMA foreign_key_check must pass before commit.

-- step 1: the original Koa server's schema (knex), created only if absent
CREATE TABLE IF NOT EXISTS users (
    id integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    username varchar(255),
    passwordHash varchar(255)
);
CREATE TABLE IF NOT EXISTS pets (
    id integer NOT NULL PRIMARY KEY AUTOINCREMENT,
    user_id integer,
    name varchar(255),
    species varchar(255)
);

-- step 2: users get snake_case columns, is_admin, created_at and usernames
-- unique without regard to case. Rows that could never log in (no username
-- or no hash) are not carried over. Two usernames that differ only by case
-- make the unique index fail and the server refuse to start: an operator must
-- choose which account to rename, the migration cannot.
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL COLLATE NOCASE,
    password_hash TEXT NOT NULL,
    is_admin INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
INSERT INTO users_new (id, username, password_hash)
    SELECT id, username, passwordHash FROM users
    WHERE username IS NOT NULL AND passwordHash IS NOT NULL;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE UNIQUE INDEX users_username_nocase ON users (username COLLATE NOCASE);

-- step 3: pets belong to users through a foreign key (deleting a user
-- deletes their pets) and an index serves "this user's pets by id". A pet
-- whose owner no longer exists is reachable by nobody, and would be inherited
-- by the next user given that id, so it is not carried over.
CREATE TABLE pets_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    species TEXT
);
INSERT INTO pets_new (id, user_id, name, species)
    SELECT id, user_id, COALESCE(name, ''), species FROM pets
    WHERE user_id IN (SELECT id FROM users);
DROP TABLE pets;
ALTER TABLE pets_new RENAME TO pets;
CREATE INDEX pets_user_id_id ON pets (user_id, id);

-- step 4: sessions. Each login opens one; access tokens name it in "sid".
-- Only a SHA-256 of a refresh token is stored: the token is 256 random
-- bits, so a fast hash is as good as bcrypt here and keeps lookups indexed.
-- Tokens already rotated stay in rotated_refresh_tokens for the session's
-- life, so one that comes back is recognised as stolen. Times are Unix
-- seconds. Revoking a session also brings expires_at forward to at most a
-- day away: pruning then needs only the expires_at index.
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    refresh_token_hash TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    user_agent TEXT,
    ip TEXT,
    revoked_at INTEGER
);
CREATE INDEX sessions_user_id ON sessions (user_id);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
CREATE TABLE rotated_refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE INDEX rotated_refresh_tokens_session_id ON rotated_refresh_tokens (session_id);
