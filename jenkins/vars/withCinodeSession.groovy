import io.cinode.jenkins.CinodeCli

/**
 * withCinodeSession(count: 2, ver: '9-stream') { hosts -> ... }: a cinode session for the block.
 * See withCinodeSession.txt and docs/jenkins.md.
 */
def call(Closure body) {
    return call([:], body)
}

def call(Map args, Closure body) {
    String step = 'withCinodeSession'
    CinodeCli cli = CinodeCli.forStep(this, step, args)
    if (args.heartbeat != null) {
        // A keeper must run beside the block for as long as it runs, which a step cannot do
        // without holding an executor: docs/jenkins.md shows the parallel branch that does it.
        error("${step}: heartbeat is not kept by this step; open the session with cinode session open --heartbeat and run cinode session keep beside the work (docs/jenkins.md, Heartbeats)")
    }
    String alias = CinodeCli.aliasOf(this, step, args)
    String count = CinodeCli.countOf(this, step, args)

    String ssid = cli.openSession(alias, args.lifetime, null)
    def result = null
    try {
        List<String> hosts = cli.getNodes(alias, count, args)
        echo("${step}: session ${alias} (${ssid}) has ${hosts.join(' ')}")
        withEnv(["CINODE_HOSTS=${hosts.join(' ')}", "CINODE_SSID=${ssid}", "CINODE_ALIAS=${alias}"]) {
            result = body.call(hosts)
        }
    } finally {
        // Success, failure or abort: the session ends here, and a failure to end it only warns.
        cli.endSessionOrWarn(alias, args.doneTimeout ?: '2m')
    }
    return result
}
