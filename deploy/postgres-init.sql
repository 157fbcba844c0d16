-- Each engine node of a shard keeps its own complete clearing ledger (a projection of the
-- shard's journal): the leader's answers statements, the standby's is ready when it takes over.
-- hogx_ledger_main_a is the image's own POSTGRES_DB.
CREATE DATABASE hogx_ledger_main_b OWNER hogx;
CREATE DATABASE hogx_ledger_ocop_a OWNER hogx;
CREATE DATABASE hogx_ledger_ocop_b OWNER hogx;
