package plateau

// ValidationFromPlateau is the network plateau from which a partner's GtK
// must hold a proof of validation unless the agreement says otherwise: at
// plateaus 3–4 the partner is reached through the national Twiin network,
// whose admission (seed 004, "Toetreden en Valideren") requires a validated
// GtK per care application; at 1–2 the partners know each other bilaterally.
const ValidationFromPlateau = 3

func requireValidation(set *bool, network int) bool {
	if set != nil {
		return *set
	}
	return network >= ValidationFromPlateau
}

// ValidationRequired reports whether agreement a requires its partner's
// proof of validation, as the enforcer resolves it.
func (c *Config) ValidationRequired(a PartnerConfig) bool {
	return requireValidation(a.RequireValidation, c.Plateau(a, Network))
}
