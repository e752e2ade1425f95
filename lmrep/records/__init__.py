"""Run folders and what goes in them: the folder (one configuration, atomic files, JSON lines), the checks of
every value a user gives, means with standard errors, and figures drawn from numbers already computed."""
