"""What the AWS tests ask moto, through boto3 (a client other than flambe's):
prepare a network, make an instance of someone else, and describe what is
there. Prints JSON. Usage: moto.py ENDPOINT COMMAND [ARGS]"""
import json
import sys

import boto3

endpoint, command, args = sys.argv[1], sys.argv[2], sys.argv[3:]
kw = dict(endpoint_url=endpoint, region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
cw = boto3.client("cloudwatch", **kw)


def tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("Tags", [])}


if command == "network":  # CIDR -> subnet and security group
    vpc = ec2.create_vpc(CidrBlock="10.213.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock=args[0])["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(GroupName="flambe-" + args[0].split(".")[2],
                                   Description="test", VpcId=vpc)["GroupId"]
    print(json.dumps({"subnet": subnet, "security_group": sg}))
elif command == "run":  # SUBNET CLUSTER CREATOR -> an instance tagged as theirs
    out = ec2.run_instances(
        ImageId="ami-0aaaaaaaaaaaaaaa0", InstanceType="t3.micro", MinCount=1, MaxCount=1,
        SubnetId=args[0],
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Cluster-Name", "Value": args[1]}, {"Key": "Purpose", "Value": "flambe"},
            {"Key": "creator", "Value": args[2]}, {"Key": "Role", "Value": "factory"},
            {"Key": "Name", "Value": args[1] + "_factory_0"}]}])
    print(json.dumps({"id": out["Instances"][0]["InstanceId"]}))
elif command == "stop":  # ID
    ec2.stop_instances(InstanceIds=[args[0]])
    print(json.dumps({"stopped": args[0]}))
elif command == "activity":  # instance ids with flambe's activity metric
    metrics = cw.list_metrics(Namespace="Flambe/Activity", MetricName="Runs")["Metrics"]
    print(json.dumps(sorted({d["Value"] for m in metrics for d in m["Dimensions"]
                             if d["Name"] == "InstanceId"})))
elif command == "instances":  # every instance, any state, with what tests check
    rows = []
    for r in ec2.describe_instances()["Reservations"]:
        for i in r["Instances"]:
            volumes = ec2.describe_volumes(Filters=[
                {"Name": "attachment.instance-id", "Values": [i["InstanceId"]]}])["Volumes"]
            rows.append({
                "id": i["InstanceId"], "state": i["State"]["Name"],
                "type": i["InstanceType"], "ami": i["ImageId"],
                "subnet": i.get("SubnetId"), "key": i.get("KeyName"),
                "groups": [g["GroupId"] for g in i.get("SecurityGroups", [])],
                "private_ip": i.get("PrivateIpAddress"), "tags": tags(i),
                "volumes": [{"size": v["Size"], "type": v["VolumeType"]} for v in volumes],
            })
    print(json.dumps(rows))
elif command == "alarms":  # every alarm, as CloudWatch describes it
    rows = []
    for a in cw.describe_alarms()["MetricAlarms"]:
        rows.append({
            "name": a["AlarmName"], "actions": a.get("AlarmActions", []),
            "threshold": a.get("Threshold"), "operator": a.get("ComparisonOperator"),
            "evaluation_periods": a.get("EvaluationPeriods"),
            "datapoints_to_alarm": a.get("DatapointsToAlarm"),
            "missing": a.get("TreatMissingData"),
            "metrics": [{
                "id": m["Id"], "expression": m.get("Expression"),
                "metric": (m.get("MetricStat") or {}).get("Metric", {}).get("MetricName"),
                "dimensions": (m.get("MetricStat") or {}).get("Metric", {}).get("Dimensions", []),
                "period": (m.get("MetricStat") or {}).get("Period"),
                "stat": (m.get("MetricStat") or {}).get("Stat"),
            } for m in a.get("Metrics", [])],
        })
    print(json.dumps(rows))
else:
    sys.exit("unknown command " + command)
