-- restorable_timestamps_verification_token: VerificationToken.expires lies
--   within 1970-01-01 .. 9999-12-31 23:59:59.999
--
-- Guards: the CHECK constraint "VerificationToken_expires_check" (added NOT
--   VALID, then validated): the file that adds it refuses first (FM001) on rows
--   outside. Kept apart from restorable_timestamps because forgea_readonly has
--   no privilege on VerificationToken: as that role this one is reported as
--   not checked (the migration owner, which `harness apply` runs as, checks it).
-- Needed by: the file that adds that constraint (restorable_timestamps today).
-- Lists: the token's identifier (the token itself is a secret) and expires
--   (as text), by identifier.
-- Remedy: delete the token (a sign-in link that can never be used normally);
--   the user asks for a new one. Works with any client.
SELECT
    t."identifier",
    t."expires"::text AS "expires"
FROM public."VerificationToken" AS t
WHERE t."expires" NOT BETWEEN '1970-01-01' AND '9999-12-31 23:59:59.999'
ORDER BY t."identifier", t."expires";
