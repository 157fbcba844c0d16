-- Each engine node of a shard keeps its own complete clearing ledger (a projection of the
-- shard's journal): the leader's answers statements, the standby's is ready when it takes over.
CREATE DATABASE hogx_ledger_main_b OWNER hogx;
