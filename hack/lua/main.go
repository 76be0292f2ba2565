// Command argocd-health runs an Argo CD resource health check (Lua) against objects, the way
// Argo CD's application controller does (argo-cd v3 util/lua/lua.go, runLua and
// ExecuteHealthLua): gopher-lua at Argo CD's version, only the package, base and table
// libraries (a health script from argocd-cm runs without the standard libraries unless
// resource.customizations.useOpenLibs is set), the object as the global `obj`, a one-second
// limit, and a returned table whose status must be one Argo CD knows.
//
// Usage: argocd-health SCRIPT.lua < objects.json
// stdin holds one JSON object or a JSON array of objects; stdout is one JSON line per
// object, {"status": ..., "message": ...}, or {"error": ...} when the script fails.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
)

var valid = map[string]bool{"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true}

type result struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
	Error   string `json:"error,omitempty"`
}

// decode is Argo CD's decodeValue: JSON values to Lua values, arrays as sequences.
func decode(l *lua.LState, value any) lua.LValue {
	switch v := value.(type) {
	case bool:
		return lua.LBool(v)
	case float64:
		return lua.LNumber(v)
	case string:
		return lua.LString(v)
	case []any:
		arr := l.CreateTable(len(v), 0)
		for _, item := range v {
			arr.Append(decode(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(v))
		for key, item := range v {
			tbl.RawSetH(lua.LString(key), decode(l, item))
		}
		return tbl
	}
	return lua.LNil
}

func health(script string, obj map[string]any) result {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for name, open := range map[string]lua.LGFunction{lua.LoadLibName: lua.OpenPackage,
		lua.BaseLibName: lua.OpenBase, lua.TabLibName: lua.OpenTable} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(open), NRet: 0, Protect: true},
			lua.LString(name)); err != nil {
			return result{Error: err.Error()}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", decode(l, obj))
	if err := l.DoString(script); err != nil {
		return result{Error: err.Error()}
	}
	ret, ok := l.Get(-1).(*lua.LTable)
	if !ok {
		return result{Error: fmt.Sprintf("expect table output from Lua script, not %s",
			l.Get(-1).Type())}
	}
	status := lua.LVAsString(ret.RawGetString("status"))
	if !valid[status] {
		return result{Status: "Unknown", Message: "Lua returned an invalid health status"}
	}
	return result{Status: status, Message: lua.LVAsString(ret.RawGetString("message"))}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-health SCRIPT.lua < objects.json")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var objs []map[string]any
	if err := json.Unmarshal(input, &objs); err != nil {
		var one map[string]any
		if err := json.Unmarshal(input, &one); err != nil {
			fmt.Fprintln(os.Stderr, "stdin: neither a JSON object nor an array of them:", err)
			os.Exit(2)
		}
		objs = []map[string]any{one}
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	for _, obj := range objs {
		if err := out.Encode(health(string(script), obj)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
}
