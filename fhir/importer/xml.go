package importer

import fhirxml "github.com/schakel-nl/schakel/fhir/xml"

// defaultDecodeXML is the XML decoder used when Config.DecodeXML is nil.
var defaultDecodeXML = fhirxml.Decode
