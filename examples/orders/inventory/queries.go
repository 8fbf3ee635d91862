package inventory

import (
	"context"

	"github.com/Masterminds/squirrel"
	"github.com/jackc/pgx/v5"

	"github.com/cairn-es/cairn/query"
)

// GetStockLevel asks for a SKU's stock (GET /inventory/:sku).
type GetStockLevel struct {
	SKU string `param:"sku"`
}

// StockLevel is a SKU's stock as the read side shows it.
type StockLevel struct {
	SKU       string `json:"sku" db:"sku"`
	Available int64  `json:"available" db:"available"`
	Reserved  int64  `json:"reserved" db:"reserved"`
	Sold      int64  `json:"sold" db:"sold"`
}

// queries answers from the read model, whose table is qualified with the
// projection's schema.
type queries struct {
	db     query.Querier
	levels string
}

func newQueries(db query.Querier, schema string) queries {
	return queries{db: db, levels: pgx.Identifier{schema, InventoryLevelsProjection}.Sanitize()}
}

func (q queries) getStockLevel(ctx context.Context, g GetStockLevel) (StockLevel, error) {
	sel := query.SQL.Select("sku", "available", "reserved", "sold").From(q.levels).Where(squirrel.Eq{"sku": g.SKU})
	return query.Get(ctx, q.db, sel, pgx.RowToStructByName[StockLevel], "SKU", g.SKU)
}
