// The Argo CD health check runner (main.go): gopher-lua pinned at the version Argo CD v3.6
// embeds, so the Lua in examples/argocd/ is tested by the interpreter that will run it.
module joyn-scim.invalid/hack/lua

go 1.26

require github.com/yuin/gopher-lua v1.1.2
