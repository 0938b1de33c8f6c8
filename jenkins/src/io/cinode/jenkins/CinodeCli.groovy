package io.cinode.jenkins

/**
 * Runs the cinode client that this library carries (resources/io/cinode/cinode.mjs, the same
 * bytes as dist/cli/index.js) with the agent's `node`, for the steps in vars/. Nothing is
 * installed on the agent: the client file is written into the workspace's temporary folder.
 *
 * Every `sh` script here is a single-quoted constant: what varies (alias, count, lifetime...)
 * reaches the shell as environment variables (withEnv), and the key only through withCredentials,
 * so no value is ever interpolated into a script and the key never appears in one.
 *
 * Only the steps sh, withEnv, withCredentials/string, libraryResource, writeFile, fileExists,
 * echo, error and isUnix are used, and only plain loops (CPS).
 */
class CinodeCli implements Serializable {
    private static final long serialVersionUID = 1L

    static final String RESOURCE = 'io/cinode/cinode.mjs'
    /** docs/api.md: an alias is 1 to 128 characters of A-Z a-z 0-9 . _ - : / @ */
    static final String ALIAS_PATTERN = '[A-Za-z0-9._:/@-]{1,128}'
    static final int ALIAS_MAX = 128
    static final String DEFAULT_CREDENTIALS_ID = 'cinode-key'

    /** The arguments of each step (besides url and credentialsId, which all take). */
    static final Map<String, List<String>> ARGUMENTS = [
        withCinodeSession: ['alias', 'count', 'ver', 'arch', 'flavor', 'lifetime', 'timeout', 'doneTimeout', 'heartbeat'],
        'cinodeSession.open': ['alias', 'lifetime', 'timeout'],
        'cinodeSession.done': ['alias', 'timeout', 'failOnError'],
        'cinodeSession.extend': ['alias', 'lifetime', 'timeout'],
        cinodeNodes: ['alias', 'count', 'ver', 'arch', 'flavor', 'timeout'],
    ]

    /** cinode's exit codes (`cinode --help`), for the step's error message. */
    static final Map<Integer, String> EXIT_MEANINGS = [
        1: 'an unexpected error in cinode itself',
        2: 'bad input',
        3: 'refused: an invalid key, an unknown session, or policy',
        4: 'no capacity: not enough ready nodes within the timeout',
        5: 'the cinode server is unreachable or failing',
        127: 'no `node` command on this agent (Node 20 or later is needed; CINODE_NODE may name it)',
    ]

    /**
     * The wrapper of every cinode call: runs the client with the options in CINODE_ARG_* and prints
     * its output, then `cinode-exit=N` as the last line (so one `sh` gives both output and code).
     * POSIX sh: Jenkins runs it with `sh -xe`.
     */
    static final String RUN = '''\
rc=0
out=$("${CINODE_NODE:-node}" "$CINODE_CLIENT" ${CINODE_ARG_TIMEOUT:+--timeout "$CINODE_ARG_TIMEOUT"} $CINODE_COMMAND \
  ${CINODE_ARG_ALIAS:+"$CINODE_ARG_ALIAS"} \
  ${CINODE_ARG_LIFETIME:+"$CINODE_ARG_LIFETIME"} \
  ${CINODE_OPT_ALIAS:+--alias "$CINODE_OPT_ALIAS"} \
  ${CINODE_OPT_SSID:+--ssid "$CINODE_OPT_SSID"} \
  ${CINODE_OPT_LIFETIME:+--lifetime "$CINODE_OPT_LIFETIME"} \
  ${CINODE_OPT_COUNT:+--count "$CINODE_OPT_COUNT"} \
  ${CINODE_OPT_VER:+--ver "$CINODE_OPT_VER"} \
  ${CINODE_OPT_ARCH:+--arch "$CINODE_OPT_ARCH"} \
  ${CINODE_OPT_FLAVOR:+--flavor "$CINODE_OPT_FLAVOR"}) || rc=$?
printf '%s\\ncinode-exit=%s\\n' "$out" "$rc"
'''

    /** The commands RUN may be given in CINODE_COMMAND (a fixed list: it is expanded unquoted). */
    static final List<String> COMMANDS = ['session open', 'session done', 'session extend', 'node get']

    private final def steps
    private final String step
    private final String url
    private final String credentialsId
    private String client

    /** `steps`: the pipeline script (`this` in a vars/ file); `step`: the step's name, for messages. */
    CinodeCli(def steps, String step, String url, String credentialsId) {
        this.steps = steps
        this.step = step
        this.url = url
        this.credentialsId = credentialsId
    }

    /** Checks the arguments of `step`, then makes its client. */
    static CinodeCli forStep(def steps, String step, Map args) {
        if (!steps.isUnix()) steps.error("${step}: cinode's steps run on Unix agents (they use sh and node); this agent is not one")
        List<String> accepted = ['url', 'credentialsId'] + ARGUMENTS[step]
        for (def key in args.keySet()) {
            if (!accepted.contains(key)) {
                steps.error("${step}: unknown argument '${key}'; accepted: ${accepted.join(', ')}")
            }
        }
        String url = args.url ?: steps.env.CINODE_URL
        if (!url) steps.error("${step}: no cinode URL: give url: '...' or set CINODE_URL in the environment")
        return new CinodeCli(steps, step, url.toString(), (args.credentialsId ?: DEFAULT_CREDENTIALS_ID).toString())
    }

    /**
     * The alias a step works on: `alias:` when given, else the one made from BUILD_TAG, so that
     * every step of one build names the same session without passing it around.
     */
    static String aliasOf(def steps, String step, Map args) {
        if (args.alias != null) {
            String alias = args.alias.toString()
            if (!alias.matches(ALIAS_PATTERN)) {
                steps.error("${step}: alias '${alias}' is not 1 to ${ALIAS_MAX} characters of A-Z a-z 0-9 . _ - : / @")
            }
            return alias
        }
        String tag = steps.env.BUILD_TAG
        if (!tag) steps.error("${step}: no alias: give alias: '...' (BUILD_TAG, the default, is not set outside a build)")
        return defaultAlias(tag)
    }

    /**
     * An alias from a BUILD_TAG: `%2F` (how a multibranch job encodes the `/` of a branch name)
     * becomes `/` again, any other character outside the alias set becomes `_`, and a tag longer
     * than 128 characters keeps its end, where the build number that tells builds apart is.
     */
    static String defaultAlias(String tag) {
        String alias = tag.replaceAll('(?i)%2F', '/').replaceAll('[^A-Za-z0-9._:/@-]', '_')
        if (alias.length() > ALIAS_MAX) alias = alias.substring(alias.length() - ALIAS_MAX)
        return alias
    }

    /** `count:` as a whole number of at least 1 (default 1). */
    static String countOf(def steps, String step, Map args) {
        if (args.count == null) return '1'
        String text = args.count.toString()
        if (!text.matches('[1-9][0-9]{0,8}')) steps.error("${step}: count: '${text}' is not a whole number of at least 1, e.g. count: 2")
        return text
    }

    /** Opens (or, by alias, reuses) the session; returns its ssid. */
    String openSession(String alias, def lifetime, def timeout) {
        return run('session open', ["CINODE_OPT_ALIAS=${alias}", "CINODE_OPT_LIFETIME=${lifetime ?: ''}", "CINODE_ARG_TIMEOUT=${timeout ?: ''}"]).trim()
    }

    /** Adds `count` nodes to the session `alias`; returns their hostnames. */
    List<String> getNodes(String alias, String count, Map args) {
        String out = run('node get', [
            "CINODE_OPT_SSID=${alias}",
            "CINODE_OPT_COUNT=${count}",
            "CINODE_OPT_VER=${args.ver ?: ''}",
            "CINODE_OPT_ARCH=${args.arch ?: ''}",
            "CINODE_OPT_FLAVOR=${args.flavor ?: ''}",
            "CINODE_ARG_TIMEOUT=${args.timeout ?: ''}",
        ])
        List<String> hosts = []
        for (String line in out.split('\n')) {
            if (line.trim()) hosts.add(line.trim())
        }
        return hosts
    }

    void extendSession(String alias, String lifetime, def timeout) {
        run('session extend', ["CINODE_ARG_ALIAS=${alias}", "CINODE_ARG_LIFETIME=${lifetime}", "CINODE_ARG_TIMEOUT=${timeout ?: ''}"])
    }

    void endSession(String alias, def timeout) {
        run('session done', ["CINODE_ARG_ALIAS=${alias}", "CINODE_ARG_TIMEOUT=${timeout ?: ''}"])
    }

    /**
     * Ends the session, and only warns when that fails: a teardown must never hide the result of
     * what ran before it. The session then ends at the end of its lifetime.
     */
    void endSessionOrWarn(String alias, def timeout) {
        try {
            endSession(alias, timeout)
        } catch (Exception e) {
            steps.echo("WARNING: ${step}: could not end cinode session ${alias} (${e.message}); it ends at the end of its lifetime")
        }
    }

    /** Runs `cinode <command>` with `environment` (the CINODE_ARG_ and CINODE_OPT_ variables); returns its stdout. */
    private String run(String command, List<String> environment) {
        if (!COMMANDS.contains(command)) steps.error("${step}: internal error: unknown cinode command '${command}'")
        List<String> env = ["CINODE_URL=${url}", "CINODE_CLIENT=${clientPath()}", "CINODE_COMMAND=${command}"]
        for (def entry in environment) env.add(entry.toString())
        String out = null
        steps.withCredentials([steps.string(credentialsId: credentialsId, variable: 'CINODE_KEY')]) {
            steps.withEnv(env) {
                out = steps.sh(script: RUN, returnStdout: true)
            }
        }
        int marker = out.lastIndexOf('cinode-exit=')
        if (marker < 0) steps.error("${step}: cinode ${command} gave no exit code")
        int code = out.substring(marker + 'cinode-exit='.length()).trim().toInteger()
        if (code != 0) {
            String meaning = EXIT_MEANINGS[code] ?: 'see `cinode --help`'
            steps.error("${step}: cinode ${command} failed with exit code ${code} (${meaning}); its message is in the log above")
        }
        return out.substring(0, marker)
    }

    /**
     * Writes the client file on the agent once per step, in the workspace's temporary folder, under a
     * name that changes with its content (so a library update never runs an older file left there).
     */
    private String clientPath() {
        if (client != null) return client
        String text = steps.libraryResource(RESOURCE)
        String dir = steps.env.WORKSPACE_TMP ?: '.cinode'
        String path = "${dir}/cinode-${text.length()}-${text.hashCode() & 0x7fffffff}.mjs"
        if (!steps.fileExists(path)) steps.writeFile(file: path, text: text)
        client = path
        return path
    }
}
