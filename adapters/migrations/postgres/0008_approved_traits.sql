-- The sensitive traits (handles_phi, external_service) an operator approved for each
-- plugin, as a JSON array of strings. NULL for rows written before approval existed:
-- whatever their manifest declares counts as approved.
ALTER TABLE plugins ADD COLUMN approved_traits TEXT;
