-- Account lockout: consecutive failed sign-ins, counted atomically in the row, and the lock's end.
ALTER TABLE palisade.users
    ADD COLUMN failed_logins integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    ADD COLUMN locked_until timestamptz;
