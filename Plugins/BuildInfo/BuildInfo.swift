import Foundation
import PackagePlugin

/// Writes `BuildInfo.swift` with the commit the build is made from (`git rev-parse`, and
/// "-dirty" when tracked files differ from it; "unknown" outside a git checkout), for `dnsfence --version`. A prebuild command:
/// it runs on every build, and rewrites the file only when the commit changed, so an unchanged
/// tree compiles nothing again.
@main
struct BuildInfo: BuildToolPlugin {
    func createBuildCommands(context: PluginContext, target: any Target) throws -> [Command] {
        let output = context.pluginWorkDirectoryURL.appending(path: "Generated")
        let script = """
            set -e
            root=$1 out=$2
            git() { command git -c safe.directory='*' -C "$root" "$@"; }
            commit=$(git rev-parse --short=12 HEAD 2>/dev/null || true)
            if [ -n "$commit" ] && ! git diff --quiet HEAD -- 2>/dev/null; then commit="$commit-dirty"; fi
            mkdir -p "$out"
            printf '/// The commit this binary was built from.\\nlet buildCommit = "%s"\\n' "${commit:-unknown}" > "$out/.next"
            if cmp -s "$out/.next" "$out/BuildInfo.swift"; then rm "$out/.next"; else mv "$out/.next" "$out/BuildInfo.swift"; fi
            """
        return [
            .prebuildCommand(
                displayName: "Recording the commit for dnsfence --version",
                executable: URL(fileURLWithPath: "/bin/sh"),
                arguments: ["-c", script, "sh", context.package.directoryURL.path, output.path],
                outputFilesDirectory: output)
        ]
    }
}
