import io.cinode.jenkins.CinodeCli

/**
 * cinodeNodes(count: 2): adds nodes to the build's open session; returns their hostnames.
 * See cinodeNodes.txt and docs/jenkins.md.
 */
List<String> call(Map args = [:]) {
    String step = 'cinodeNodes'
    CinodeCli cli = CinodeCli.forStep(this, step, args)
    String alias = CinodeCli.aliasOf(this, step, args)
    List<String> hosts = cli.getNodes(alias, CinodeCli.countOf(this, step, args), args)
    echo("${step}: session ${alias} got ${hosts.join(' ')}")
    return hosts
}
