-- The marketplace tables kc-price's ingest function reads, as its defaults name them (MarketplaceSchema).
-- Any schema fits if it has these columns under some names: set the names in MarketplaceSchema.
-- The local stack (make local) creates exactly this.

-- Every recorded version of every sale. A correction is a new row for the same (house_id, sale_date) with a later
-- recorded_at (or the row updated in place with recorded_at set to the time of the correction); the ingest
-- function exports the latest version, and it replaces the earlier one in the training data.
CREATE TABLE IF NOT EXISTS sales (
    sale_id       bigserial PRIMARY KEY,            -- reported with any row that fails validation
    house_id      bigint NOT NULL,
    sale_date     date NOT NULL,
    price         numeric(12, 2) NOT NULL,
    bedrooms      integer,
    bathrooms     numeric(4, 2),
    sqft_living   integer,
    sqft_lot      integer,
    floors        numeric(3, 1),
    waterfront    smallint,
    "view"        smallint,
    "condition"   smallint,
    grade         smallint,
    sqft_above    integer,
    sqft_basement integer,
    yr_built      smallint,
    yr_renovated  smallint,
    zipcode       integer,
    lat           double precision,
    long          double precision,
    sqft_living15 integer,
    sqft_lot15    integer,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX IF NOT EXISTS sales_recorded_at ON sales (recorded_at);

-- The houses on the market now (active), priced by precompute.
CREATE TABLE IF NOT EXISTS listings (
    house_id      bigint PRIMARY KEY,
    bedrooms      integer,
    bathrooms     numeric(4, 2),
    sqft_living   integer,
    sqft_lot      integer,
    floors        numeric(3, 1),
    waterfront    smallint,
    "view"        smallint,
    "condition"   smallint,
    grade         smallint,
    sqft_above    integer,
    sqft_basement integer,
    yr_built      smallint,
    yr_renovated  smallint,
    zipcode       integer,
    lat           double precision,
    long          double precision,
    sqft_living15 integer,
    sqft_lot15    integer,
    active        boolean NOT NULL DEFAULT true
);

-- The ingest function's database user needs nothing more than:
--   CREATE ROLE kcprice_ingest LOGIN PASSWORD '...';
--   GRANT SELECT ON sales, listings TO kcprice_ingest;
