// Package renderbench measures helm's in-process render of bench/chart/woocommerce: the
// counterpart of Storeplane's criterion bench (bench/render_vs_helm.rs), with the same
// inputs (release/store name, store id, default parameters, the fixture secrets in
// bench/helm/secrets.yaml, default platform settings).
//
// The chart is loaded once; each iteration is what `helm template` does per render
// after loading: coalesce values and validate them against values.schema.json
// (chartutil.ToRenderValues), execute the templates (engine.Render), and — in
// BenchmarkTemplate — split and sort the manifests by kind (releaseutil.SortManifests),
// as `helm template` does before printing.
//
//	go test ./renderbench -run '^$' -bench . -benchmem -count 5
//
// Environment: STOREPLANE_HELM_CHART (chart dir, default ../../../chart/woocommerce),
// STOREPLANE_HELM_SECRETS (flat secrets file, default ../../secrets.yaml),
// STOREPLANE_BENCH_NAME / STOREPLANE_BENCH_ID (default bench / the fixed id below).
package renderbench

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"
)

// The fixed store id every render benchmark uses (bench/render-compare.sh passes the
// same one to `storeplane render --id` and `helm template --set store.id=`).
const defaultID = "5f0c8c1e-7d3a-4b2e-9f1a-2c6d8e4b7a90"

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

type fixture struct {
	chart   *chart.Chart
	values  map[string]interface{}
	options chartutil.ReleaseOptions
}

func load(b *testing.B) fixture {
	b.Helper()
	ch, err := loader.Load(env("STOREPLANE_HELM_CHART", "../../../chart/woocommerce"))
	if err != nil {
		b.Fatalf("loading the chart: %v", err)
	}
	raw, err := os.ReadFile(env("STOREPLANE_HELM_SECRETS", "../../secrets.yaml"))
	if err != nil {
		b.Fatalf("reading the secrets fixture: %v", err)
	}
	secrets := map[string]interface{}{}
	if err := yaml.Unmarshal(raw, &secrets); err != nil {
		b.Fatalf("parsing the secrets fixture: %v", err)
	}
	name := env("STOREPLANE_BENCH_NAME", "bench")
	id := env("STOREPLANE_BENCH_ID", defaultID)
	simple := strings.ReplaceAll(id, "-", "")
	if len(simple) != 32 {
		b.Fatalf("STOREPLANE_BENCH_ID %q is not a UUID", id)
	}
	return fixture{
		chart: ch,
		// What `helm template -f secrets-values.yaml --set store.id=…` passes in.
		values: map[string]interface{}{
			"store":   map[string]interface{}{"id": id},
			"secrets": secrets,
		},
		options: chartutil.ReleaseOptions{
			Name:      name,
			Namespace: fmt.Sprintf("store-%s-%s", name, simple[24:]),
			Revision:  1,
			IsInstall: true,
		},
	}
}

func render(b *testing.B, f fixture) map[string]string {
	vals, err := chartutil.ToRenderValues(f.chart, f.values, f.options, chartutil.DefaultCapabilities)
	if err != nil {
		b.Fatalf("values: %v", err)
	}
	out, err := engine.Render(f.chart, vals)
	if err != nil {
		b.Fatalf("render: %v", err)
	}
	return out
}

// BenchmarkRender: values + schema validation + template execution.
func BenchmarkRender(b *testing.B) {
	f := load(b)
	if n := len(render(b, f)); n == 0 {
		b.Fatal("the chart rendered no files")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		render(b, f)
	}
}

// BenchmarkTemplate: BenchmarkRender plus splitting the output into manifests and
// sorting them in install order, as `helm template` does before it prints.
func BenchmarkTemplate(b *testing.B) {
	f := load(b)
	_, manifests, err := releaseutil.SortManifests(render(b, f), nil, releaseutil.InstallOrder)
	if err != nil {
		b.Fatalf("sorting: %v", err)
	}
	if len(manifests) < 20 {
		b.Fatalf("expected the store's 20+ objects, got %d manifests", len(manifests))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := releaseutil.SortManifests(render(b, f), nil, releaseutil.InstallOrder); err != nil {
			b.Fatalf("sorting: %v", err)
		}
	}
}
