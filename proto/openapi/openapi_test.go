package openapi_test

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/go-openapi/loads"
	"github.com/go-openapi/strfmt"
	"github.com/go-openapi/validate"
	"github.com/stretchr/testify/require"

	"github.com/trustfed/trustfed/proto/openapi"
)

// The served OpenAPI v2 document is valid (go-openapi's validator: what
// code generators check), and each path is declared once: no two templates
// differ only in their parameter names.
func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc, err := loads.Analyzed(json.RawMessage(openapi.JSON), "2.0")
	require.NoError(t, err)
	res, _ := validate.NewSpecValidator(doc.Schema(), strfmt.Default).Validate(doc)
	if res.HasErrors() {
		var msgs []string
		for _, e := range res.Errors {
			msgs = append(msgs, e.Error())
		}
		t.Fatalf("the OpenAPI document is invalid:\n%s", strings.Join(msgs, "\n"))
	}

	param := regexp.MustCompile(`\{[^}]*\}`)
	shapes := map[string]string{}
	for path := range doc.Spec().Paths.Paths {
		shape := param.ReplaceAllString(path, "{}")
		if other, ok := shapes[shape]; ok {
			t.Errorf("%s and %s are one path with two parameter names", other, path)
		}
		shapes[shape] = path
	}
}
