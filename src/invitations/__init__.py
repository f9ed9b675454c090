"""Study invitations: an owner invites an address, its owner accepts or declines."""
