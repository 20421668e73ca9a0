package registry

import (
	"context"
	"errors"
	"fmt"

	trustfedv1 "github.com/trustfed/trustfed/proto/trustfed/v1"
	"github.com/trustfed/trustfed/registry/state"
	"golang.org/x/sync/errgroup"
)

// MaxBatchChecks bounds the items of one CheckInteractions call.
const MaxBatchChecks = 256

// CheckInteractions decides every item of a batch the way CheckInteraction
// decides one: each item goes through CheckInteraction itself, all of them
// at once, so their audit events reach the batcher together and share its
// batches (and their quorum certificates). The batch is validated as a
// whole before any item is decided (errors name checks[i].field); an item
// that fails after that fails the call, naming the item.
func (s *registryService) CheckInteractions(ctx context.Context, req *trustfedv1.CheckInteractionsRequest) (*trustfedv1.CheckInteractionsResponse, error) {
	checks := req.GetChecks()
	if err := validateBatch(checks); err != nil {
		return nil, err
	}
	out := make([]*trustfedv1.CheckInteractionResponse, len(checks))
	g, gctx := errgroup.WithContext(ctx)
	for i, check := range checks {
		g.Go(func() error {
			resp, err := s.CheckInteraction(gctx, check)
			if err != nil {
				return itemError(i, err)
			}
			out[i] = resp
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return &trustfedv1.CheckInteractionsResponse{Results: out}, nil
}

// validateBatch checks the batch's size and every item as CheckInteraction
// would, naming the item in the field of the error.
func validateBatch(checks []*trustfedv1.CheckInteractionRequest) error {
	if len(checks) == 0 {
		return state.Invalid("checks", "at least one check is required")
	}
	if len(checks) > MaxBatchChecks {
		return state.Invalid("checks", "at most %d checks per call, got %d", MaxBatchChecks, len(checks))
	}
	for i, check := range checks {
		if check == nil {
			return state.Invalid(fmt.Sprintf("checks[%d]", i), "is required")
		}
		if err := validateCheck(check); err != nil {
			return itemError(i, err)
		}
	}
	return nil
}

// itemError names item i of the batch in err: in the field of a business
// error, or as a prefix of any other.
func itemError(i int, err error) error {
	var se *state.Error
	if errors.As(err, &se) {
		field := fmt.Sprintf("checks[%d]", i)
		if se.Field != "" {
			field += "." + se.Field
		}
		return &state.Error{Kind: se.Kind, Field: field, Msg: se.Msg}
	}
	return fmt.Errorf("checks[%d]: %w", i, err)
}
