package oauth_test

import (
	"testing"

	"github.com/schakel-nl/schakel/oauth"
	"github.com/schakel-nl/schakel/oauth/replaytest"
)

func TestMemoryReplayCacheContract(t *testing.T) {
	replaytest.Run(t, func(t *testing.T, clock *replaytest.Clock) func() oauth.ReplayCache {
		c := oauth.NewMemoryReplayCache(0, clock.Now)
		return func() oauth.ReplayCache { return c }
	}, false)
}
