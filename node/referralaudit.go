package node

import (
	"context"

	"github.com/schakel-nl/schakel/notifiedpull"
	"github.com/schakel-nl/schakel/oauth"
)

// referralPatient is the patient of the referral an access token was
// issued for (Notified Pull), for the audit record of a request that names
// no patient itself: a read of the workflow Task, a document of the
// referral, or a request refused under it. Empty without a referral.
func (n *Node) referralPatient(ctx context.Context, tenant string, tok *oauth.AccessToken) string {
	if n.np == nil || tok == nil {
		return ""
	}
	id := tok.StringClaim(notifiedpull.ClaimGrant)
	if id == "" {
		return ""
	}
	g, err := n.np.SentOne(ctx, tenant, id)
	if err != nil {
		return ""
	}
	return g.PatientBSN
}
