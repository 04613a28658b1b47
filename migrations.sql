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
-- AUTOINCREMENT promises never to reuse an id: carry the old counter over.
UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN ('users', 'users_new'))
    WHERE name = 'users_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'users_new', seq FROM sqlite_sequence
    WHERE name = 'users' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'users_new');
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
-- AUTOINCREMENT promises never to reuse an id: carry the old counter over.
UPDATE sqlite_sequence SET seq = (SELECT max(seq) FROM sqlite_sequence WHERE name IN ('pets', 'pets_new'))
    WHERE name = 'pets_new';
INSERT INTO sqlite_sequence (name, seq) SELECT 'pets_new', seq FROM sqlite_sequence
    WHERE name = 'pets' AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'pets_new');
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

-- step 5: login throttling, shared by every worker. One row per (username,
-- client IP) with failures in a row; the username is kept as a SHA-256 of
-- its lower case, so an attacker's arbitrary strings are not stored.
CREATE TABLE login_throttle (
    username_key TEXT NOT NULL,
    ip TEXT NOT NULL,
    failures INTEGER NOT NULL,
    lockouts INTEGER NOT NULL DEFAULT 0,
    locked_until INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (username_key, ip)
) WITHOUT ROWID;
CREATE INDEX login_throttle_updated_at ON login_throttle (updated_at);

-- step 6: administration. A disabled account cannot log in and its sessions
-- end; last_login_at (UTC, whole seconds, like created_at) moves on each
-- successful login, as the original Express seed's lastLogin did.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1));
ALTER TABLE users ADD COLUMN last_login_at TEXT;

-- step 7: signing keys for asymmetric access tokens (JWT_ALGORITHM EdDSA,
-- ES256 or RS256), shared by every worker and host. kid is the key's RFC 7638
-- thumbprint; public_jwk its public JWK as JSON. private_key is the PKCS#8
-- private key sealed with AES-GCM under a key derived from JWT_SECRET, in
-- base64: a copy of the database alone cannot sign. Times are Unix seconds:
-- a key signs from activates_at until retires_at (NULL for the newest key of
-- each algorithm, which the unique index keeps to one, so two workers racing
-- to add or rotate a key cannot both succeed).
CREATE TABLE signing_keys (
    kid TEXT PRIMARY KEY,
    algorithm TEXT NOT NULL,
    public_jwk TEXT NOT NULL,
    private_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    activates_at INTEGER NOT NULL,
    retires_at INTEGER
);
CREATE UNIQUE INDEX signing_keys_newest ON signing_keys (algorithm) WHERE retires_at IS NULL;

-- step 8: the realtime outbox. A change to a user's pets writes its event in
-- the same transaction, numbered by a per-user counter (event_counters),
-- so that a change that rolled back is never announced, one that committed
-- always is, and a client sees any gap. Rows about ended sessions carry no
-- event_id: they tell every worker which live sockets to close. Rows are kept
-- REALTIME_REPLAY_SECONDS for reconnecting clients, then pruned. No foreign
-- key: the event that a deleted account's sockets must hear outlives the user.
CREATE TABLE event_counters (
    user_id INTEGER PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    last_event_id INTEGER NOT NULL
);
CREATE TABLE realtime_events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL,
    event_id INTEGER,
    name TEXT NOT NULL,
    data TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX realtime_events_user_id_event_id ON realtime_events (user_id, event_id);
CREATE INDEX realtime_events_created_at ON realtime_events (created_at);

-- step 9: refresh-token bookkeeping constant per session, and a credentials
-- version. A refresh token is now "<session id>.<generation>.<random>.<tag>":
-- the session keeps the SHA-256 of its current token's random part and the
-- generation it has reached; an older token of the session is recognised by
-- its tag (an HMAC under a key derived from JWT_SECRET) and its lower
-- generation, so rotated tokens no longer need a row each. Sessions opened
-- before this step keep working: their current token is found by its hash
-- and rotates into the new form; a token they had already rotated is no
-- longer recognised as reused, only refused as invalid. credentials_version
-- moves with every password change (not with a re-hash of the same
-- password): a login opens its session only if the version it read with the
-- hash it verified is still the user's.
ALTER TABLE sessions ADD COLUMN refresh_generation INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN credentials_version INTEGER NOT NULL DEFAULT 0;
DROP TABLE rotated_refresh_tokens;
