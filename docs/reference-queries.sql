-- The queries of Clerk's reference architecture, against the synced tables.
-- Each block is run by the test suite (tests/e2e/reference_queries.rs), so they stay true.
-- $1, $2 are parameters.

-- name: user_by_clerk_id
-- The signed-in user (from the session's `sub`), only while the user exists.
SELECT id, clerk_id, email, name
FROM users
WHERE clerk_id = $1 AND deleted_at IS NULL;

-- name: organization_live_members
-- An organization's current members with their roles.
SELECT u.clerk_id AS user_clerk_id, u.email, u.name, m.role
FROM org_memberships m
JOIN users u ON u.id = m.user_id
WHERE m.org_id = $1 AND m.deleted_at IS NULL AND u.deleted_at IS NULL
ORDER BY u.clerk_id;

-- name: user_organizations
-- The organizations a user belongs to now.
SELECT o.clerk_id AS org_clerk_id, o.name, o.slug, m.role
FROM org_memberships m
JOIN users u ON u.id = m.user_id
JOIN organizations o ON o.clerk_id = m.org_id
WHERE u.clerk_id = $1 AND m.deleted_at IS NULL AND o.deleted_at IS NULL
ORDER BY o.clerk_id;

-- name: tenant_scoped_read
-- An application table scoped by organization, readable only by the organization's members.
SELECT p.id, p.title
FROM projects p
WHERE p.org_id = $1
  AND EXISTS (
    SELECT 1 FROM org_memberships m JOIN users u ON u.id = m.user_id
    WHERE m.org_id = p.org_id AND u.clerk_id = $2 AND m.deleted_at IS NULL
  )
ORDER BY p.id;
